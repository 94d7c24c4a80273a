"""Small zoo-format models the tests build by hand."""
import numpy as np

from food101.caffe2.proto import caffe2_pb2
from food101.caffe2.utils import given_fill, make_op
from food101.zoo.model import ZooModel


def bn_zoo_model(num_classes=10):
    """A tiny zoo-format model with test-mode SpatialBN layers (as zoo predict nets have)."""
    rs = np.random.RandomState(8)
    ops = [
        ("Conv", ["data", "c1_w", "c1_b"], ["c1"], dict(kernel=3, pad=1)),
        ("SpatialBN", ["c1", "bn1_s", "bn1_b", "bn1_rm", "bn1_riv"], ["bn1"], dict(is_test=1, epsilon=1e-5)),
        ("Relu", ["bn1"], ["bn1"], {}),
        ("MaxPool", ["bn1"], ["pool1"], dict(kernel=3, stride=2, legacy_pad=3)),
        ("Conv", ["pool1", "c2_w", "c2_b"], ["c2"], dict(kernel=1)),
        ("SpatialBN", ["c2", "bn2_s", "bn2_b", "bn2_rm", "bn2_riv"], ["bn2"], dict(is_test=1, epsilon=1e-5)),
        ("Relu", ["bn2"], ["bn2"], {}),
        ("Dropout", ["bn2"], ["bn2"], dict(ratio=0.5, is_test=1)),
        ("Conv", ["bn2", "conv10_w", "conv10_b"], ["conv10"], dict(kernel=1)),
        ("Relu", ["conv10"], ["conv10"], {}),
        ("AveragePool", ["conv10"], ["pool10"], dict(global_pooling=1)),
        ("Softmax", ["pool10"], ["softmaxout"], {}),
    ]
    predict = caffe2_pb2.NetDef(name="bn_net")
    for op_type, inputs, outputs, args in ops:
        predict.op.append(make_op(op_type, inputs, outputs, order="NCHW", **args))
    shapes = {"c1_w": (4, 3, 3, 3), "c1_b": (4,), "c2_w": (6, 4, 1, 1), "c2_b": (6,),
              "conv10_w": (num_classes, 6, 1, 1), "conv10_b": (num_classes,)}
    for bn, c in (("bn1", 4), ("bn2", 6)):
        shapes.update({bn + "_s": (c,), bn + "_b": (c,), bn + "_rm": (c,), bn + "_riv": (c,)})
    init = caffe2_pb2.NetDef(name="bn_net_init")
    for name, shape in shapes.items():
        value = rs.randn(*shape).astype(np.float32) * 0.3
        if name.endswith("_riv"):
            value = np.abs(value) + 0.5
        init.op.append(given_fill(name, value))
    predict.external_input.extend(["data"] + list(shapes))
    predict.external_output.append("softmaxout")
    return ZooModel(init, predict, "data", (1, 3, 12, 12))
