"""food101.interop.onnx_import.from_onnx on the ONNX-zoo copy of the Caffe2 SqueezeNet that the onnx package ships
(`light_squeezenet.onnx`: opset 9, conv weights as ConstantOfShape of their shapes), checked
against onnx.reference.ReferenceEvaluator and the output the onnx package stores with it.

Note: onnx's ReferenceEvaluator implements Softmax with opset-13 semantics only (normalise along
one axis, default -1); on this opset-9 model (coerce to 2-D at axis 1, which Caffe2 shares) it
returns all ones. So the opset-9 graph is compared up to the softmax input, and the full graph
after onnx.version_converter lifts it to opset 13.
"""
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper, version_converter  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from food101 import zoo  # noqa: E402
from food101.interop.onnx_import import from_onnx  # noqa: E402
from food101.caffe2 import workspace  # noqa: E402

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
SQUEEZENET = os.path.join(LIGHT, "light_squeezenet.onnx")
needs_light = pytest.mark.skipif(not os.path.exists(SQUEEZENET),
                                 reason="this onnx build does not ship light_squeezenet.onnx")


def _run_ours(model, x, blobs=()):
    workspace.ResetWorkspace()
    workspace.RunNetOnce(model.init_net)
    workspace.FeedBlob(model.input_name, x)
    workspace.RunNetOnce(model.predict_net)
    return [workspace.FetchBlob(b) for b in (model.output_name,) + tuple(blobs)]


def _close(got, want, tol=1e-4):
    """Within tol relative to the largest magnitude (constant-weight nets reach 1e8)."""
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)


def _with_outputs(model, names):
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for name in names:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return model


@pytest.fixture(scope="module")
def light():
    return onnx.load(SQUEEZENET)


@needs_light
def test_import_maps_the_graph_to_caffe2_ops(light):
    model = from_onnx(SQUEEZENET)
    types = [op.type for op in model.predict_net.op]
    assert types.count("Conv") == 26 and types.count("Concat") == 8 and types.count("MaxPool") == 3
    assert types[-4:] == ["Conv", "Relu", "AveragePool", "Softmax"]
    assert model.input_name == "data_0" and model.input_shape == (1, 3, 224, 224)
    assert model.output_name == "softmaxout_1" and model.num_classes == 1000
    # ConstantOfShape weights were folded into GivenTensorFill ops; shape inputs are gone
    assert {op.type for op in model.init_net.op} == {"GivenTensorFill"}
    assert model.param_shapes["conv1_w_0"] == (64, 3, 3, 3)
    assert not any(name.endswith("__SHAPE") for name in model.params)
    assert model.num_params == 1235496
    # opset 9 MaxPool has no ceil_mode: floor sizes, no legacy_pad
    pool = [op for op in model.predict_net.op if op.type == "MaxPool"][0]
    assert not [a for a in pool.arg if a.name == "legacy_pad"]
    workspace.RunNetOnce(model.init_net)
    np.testing.assert_array_equal(workspace.FetchBlob("conv1_b_0"),
                                  numpy_helper.to_array([t for t in light.graph.initializer
                                                         if t.name == "conv1_b_0"][0]))


@needs_light
def test_light_squeezenet_matches_the_reference_evaluator(light):
    """Every pooling stage and the softmax input agree within 1e-4 (relative to the magnitude:
    with all conv weights 0.02 the activations reach ~1e9, so the softmax over 1000 near-equal
    logits is decided by rounding and is compared on the random-weight copy below)."""
    model = from_onnx(SQUEEZENET)
    x = np.random.RandomState(0).rand(1, 3, 67, 67).astype(np.float32)
    checked = ["r2", "r17", "r32", "r60", "r65"]  # pool1, pool3, pool5, fire9 concat, pool10
    ours = _run_ours(model, x, checked)
    want = ReferenceEvaluator(_with_outputs(light, checked)).run(None, {"data_0": x})
    for name, got, ref in zip(checked, ours[1:], want[1:]):
        assert got.shape == ref.shape, name
        _close(got, ref)
    assert ours[0].shape == (1, 1000, 1, 1)
    np.testing.assert_allclose(ours[0].sum(axis=1), 1.0, atol=1e-5)


def _random_weights(model_proto, seed=0):
    """The light model with its constant conv weights replaced by random He-scaled ones."""
    m = onnx.ModelProto.FromString(model_proto.SerializeToString())
    rs = np.random.RandomState(seed)
    shapes = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer if t.name.endswith("__SHAPE")}
    keep = []
    for node in m.graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in shapes:
            shape = tuple(int(d) for d in shapes[node.input[0]])
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            value = (rs.randn(*shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
            if len(shape) == 1:
                value = (rs.randn(*shape) * 0.05).astype(np.float32)
            m.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        else:
            keep.append(node)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    m.ir_version = max(m.ir_version, 4)  # initializers that are not graph inputs need IR >= 4
    return m


def _softmax(z, axis=1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@needs_light
def test_random_weights_opset9_softmax_is_caffe2_coerced_softmax(light):
    proto = _random_weights(light, seed=2)
    model = from_onnx(proto)
    x = (np.random.RandomState(5).rand(1, 3, 67, 67).astype(np.float32) - 0.5) * 4
    ours, pool10 = _run_ours(model, x, ["r65"])
    (ref_pool10,) = ReferenceEvaluator(_with_outputs(proto, ["r65"])).run(None, {"data_0": x})[1:]
    _close(pool10, ref_pool10)
    np.testing.assert_allclose(ours, _softmax(ref_pool10), atol=1e-4, rtol=1e-4)


@needs_light
def test_random_weights_through_opset13_match_within_1e4(light):
    proto = version_converter.convert_version(_random_weights(light), 13)
    assert [n.op_type for n in proto.graph.node[-4:]] == ["Shape", "Flatten", "Softmax", "Reshape"]
    model = from_onnx(proto)
    x = (np.random.RandomState(1).rand(2, 3, 67, 67).astype(np.float32) - 0.5) * 4
    (ours,) = _run_ours(model, x)
    (want,) = ReferenceEvaluator(proto).run(None, {"data_0": x})
    assert ours.shape == want.shape == (2, 1000, 1, 1)
    assert want.max() > 0.0015  # not uniform: the comparison means something
    np.testing.assert_allclose(ours, want, atol=1e-4, rtol=1e-4)


@needs_light
def test_imported_model_can_be_re_headed_and_frozen(light):
    model = from_onnx(_random_weights(light))
    food = zoo.replace_classifier(model, 101)
    train = zoo.build_finetune_model(food, input_kind="float")
    assert [str(p) for p in train.params] == ["conv10_w_0", "conv10_b_0"]


def test_unsupported_node_is_named():
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Erf", ["x"], ["y"], name="my_erf")], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 4, 4])])
    with pytest.raises(zoo.ZooError, match=r"'my_erf' \(Erf\) has no Caffe2 mapping; supported: .*Conv"):
        from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))


def test_small_graph_with_gemm_bn_and_broadcast_matches_reference():
    """Gemm (alpha/beta folded), BatchNormalization, a constant per-channel Add, AveragePool
    ceil_mode, Flatten, Softmax(13): each mapped op checked against the reference evaluator."""
    helper, TP = onnx.helper, onnx.TensorProto
    rs = np.random.RandomState(3)
    inits = {
        "w": rs.randn(4, 3, 3, 3).astype(np.float32) * 0.3, "b": rs.randn(4).astype(np.float32),
        "s": rs.rand(4).astype(np.float32) + 0.5, "bb": rs.randn(4).astype(np.float32),
        "m": rs.randn(4).astype(np.float32), "v": rs.rand(4).astype(np.float32) + 0.5,
        "c": rs.randn(4, 1, 1).astype(np.float32), "g": rs.randn(5, 36).astype(np.float32) * 0.2,
        "gb": rs.randn(5).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c1"], kernel_shape=[3, 3], pads=[1, 0, 1, 2]),
        helper.make_node("BatchNormalization", ["c1", "s", "bb", "m", "v"], ["bn"], epsilon=1e-3),
        helper.make_node("Add", ["bn", "c"], ["add"]),
        helper.make_node("Relu", ["add"], ["r"]),
        helper.make_node("AveragePool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "g", "gb"], ["fc"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Softmax", ["fc"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TP.FLOAT, [2, 3, 5, 5])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, [2, 5])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    # opset 15: onnx's reference BatchNormalization-9 (opsets 9-13) reads the default momentum
    # as training mode; BatchNormalization-14 has an explicit training_mode=0
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    onnx.checker.check_model(proto)
    model = from_onnx(proto)
    x = rs.randn(2, 3, 5, 5).astype(np.float32)
    (ours,) = _run_ours(model, x)
    (want,) = ReferenceEvaluator(proto).run(None, {"x": x})
    np.testing.assert_allclose(ours, want, atol=1e-5, rtol=1e-4)
