"""Classifier surgery: swap the zoo's 1000-way classifier for a new N-way layer.

SqueezeNet's classifier is `conv10` (1x1 Conv, 512 -> 1000) followed by ReLU, global average
pooling and softmax. `replace_classifier` keeps that structure and the blob names (Caffe2 naming:
the new layer is again `conv10` with `conv10_w`, `conv10_b`), drops the 1000-way weights from the
init net and adds fill ops for the new ones:

    weight_init="msra" (default)  MSRAFill: Gaussian(0, sqrt(2 / fan_out)), fan_out = N*kh*kw, the
                                  He initialisation Caffe2's brew.conv uses for ReLU layers
    weight_init="xavier"          XavierFill: Uniform(+-sqrt(3 / fan_in))
    weight_init="gaussian"        GaussianFill(mean 0, std 0.01), Caffe's classic classifier init
    bias: ConstantFill(bias_init), 0.0 by default.

The output blob (`softmaxout`) is unchanged, now N x num_classes x 1 x 1.
"""
import os

from food101.caffe2.utils import make_op
from food101.zoo import _nets
from food101.zoo.download import models_dir
from food101.zoo.model import ZooError, find_classifier, read_labels

WEIGHT_INITS = {
    "msra": ("MSRAFill", {}),
    "xavier": ("XavierFill", {}),
    "gaussian": ("GaussianFill", {"mean": 0.0, "std": 0.01}),
}


def food101_classes():
    """The 101 Food-101 class ids in the dataset's order (models/food101/classes.txt)."""
    return read_labels(os.path.join(models_dir(), "food101", "classes.txt"))


def replace_classifier(model, num_classes=101, class_names=None, weight_init="msra", bias_init=0.0):
    """A copy of `model` whose classifier predicts `num_classes` classes.

    class_names: a list, a labels file, or None for models/food101/classes.txt when
    num_classes == 101 (otherwise class_k). weight_init: "msra" | "xavier" | "gaussian" or a
    (FillOpType, {args}) pair. The new weights are fill ops in the init net: running it draws them.
    """
    if isinstance(class_names, (str, os.PathLike)):
        class_names = read_labels(class_names)
    if class_names is None:
        class_names = food101_classes() if num_classes == 101 else [
            "class_%d" % i for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ZooError("replace_classifier: %d class names for num_classes=%d"
                       % (len(class_names), num_classes))
    fill = WEIGHT_INITS.get(weight_init, weight_init) if isinstance(weight_init, str) else weight_init
    if isinstance(fill, str) or len(fill) != 2:
        raise ZooError("replace_classifier: weight_init %r is not one of %s or a (FillOp, {args}) pair"
                       % (weight_init, ", ".join(WEIGHT_INITS)))
    clf = find_classifier(model.predict_net)
    old_shape = model.param_shapes[clf.weight]
    new_shape = (num_classes,) + tuple(old_shape[1:])
    if clf.type == "FCTransposed":
        new_shape = tuple(old_shape[:-1]) + (num_classes,)
    replaced = {clf.weight} | ({clf.bias} if clf.bias else set())
    shared = [op.type for op in model.predict_net.op if op is not clf.op
              and replaced.intersection(op.input)]
    if shared:
        raise ZooError("classifier blobs %s are also read by %s: cannot replace them alone"
                       % (sorted(replaced), shared))
    init = _nets.clone(model.init_net)
    keep = [op for op in init.op if not replaced.intersection(op.output)]
    del init.op[:]
    init.op.extend(keep)
    fill_type, fill_args = fill
    init.op.append(make_op(fill_type, [], [clf.weight], shape=list(new_shape), **fill_args))
    if clf.bias:
        init.op.append(make_op("ConstantFill", [], [clf.bias], shape=[num_classes],
                                     value=float(bias_init)))
    predict = _nets.clone(model.predict_net)
    _rename_external(init, replaced)
    return model.copy(init_net=init, predict_net=predict, class_names=class_names)


def _rename_external(init, replaced):
    """Keep the init net's external_output list in step with its ops (replaced blobs go last)."""
    if init.external_output:
        kept = [b for b in init.external_output if b not in replaced]
        del init.external_output[:]
        init.external_output.extend(kept + sorted(replaced, key=lambda b: b.endswith("_b")))
