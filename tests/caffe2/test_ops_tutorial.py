"""Ops the Caffe2 tutorials use (Toy_Regression's SquaredL2Distance and the other distances,
the Python op), forward and gradients against real Caffe2 (tutorial_ops/, made by
tools/gen_tutorial_op_fixtures.py)."""
import json

import numpy as np
import pytest

from food101.caffe2 import core, workspace
from food101.caffe2.errors import Caffe2Error
from tests.support import reference_path

CASES = np.load(reference_path("tutorial_ops", "cases.npz"))
with open(reference_path("tutorial_ops", "cases.json")) as fh:
    INDEX = json.load(fh)


@pytest.mark.parametrize("name", sorted(INDEX))
def test_distance_ops_match_real_caffe2(name):
    spec = INDEX[name]
    net = core.Net(name)
    for blob in spec["inputs"]:
        workspace.FeedBlob(blob, CASES["%s/in:%s" % (name, blob)])
    out = getattr(net, spec["op_type"])(spec["inputs"], "out", **spec["args"])
    grad_map = net.AddGradientOperators({out: "out_gradin"})
    workspace.FeedBlob("out_gradin", CASES["%s/gradin" % name])
    workspace.RunNetOnce(net)
    np.testing.assert_allclose(workspace.FetchBlob("out"), CASES["%s/out" % name], rtol=1e-5, atol=1e-6)
    for blob in spec["inputs"]:
        key = "%s/grad:%s" % (name, blob)
        if key in CASES:
            np.testing.assert_allclose(workspace.FetchBlob(str(grad_map[blob])), CASES[key],
                                       rtol=1e-4, atol=1e-5)


def test_python_op_forward_reshape_and_feed():
    def double(inputs, outputs):
        assert isinstance(inputs[0].shape, tuple) and isinstance(inputs[0].data, np.ndarray)
        outputs[0].reshape(inputs[0].shape)
        outputs[0].data[...] = inputs[0].data * 2
        outputs[1].feed(inputs[0].data.sum())

    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    net = core.Net("py")
    net.Python(double)(["x"], ["y", "s"])
    workspace.FeedBlob("x", x)
    workspace.RunNetOnce(net)
    np.testing.assert_array_equal(workspace.FetchBlob("y"), x * 2)
    assert workspace.FetchBlob("s") == 15


def test_python_op_gradient_with_indices():
    def f(inputs, outputs):
        for i in range(3):
            outputs[i].feed(inputs[i].data * 2)

    def grad_f(inputs, outputs):
        # [3 inputs, 3 outputs, grads of y1 and y3], producing only x1's gradient
        assert len(inputs) == 8 and len(outputs) == 1
        outputs[0].feed(inputs[6].data * 2)

    op = core.CreatePythonOperator(f, ["x1", "x2", "x3"], ["y1", "y2", "y3"], grad_f=grad_f,
                                   grad_output_indices=[0, 2], grad_input_indices=[0])
    net = core.Net("pygrad")
    net.Proto().op.extend([op])
    net.Sum(["y1", "y3"], "total")
    net.AveragedLoss("total", "loss")
    grads = net.AddGradientOperators(["loss"])
    xs = [np.random.RandomState(i).randn(2, 2).astype(np.float32) for i in range(3)]
    for name, value in zip(["x1", "x2", "x3"], xs):
        workspace.FeedBlob(name, value)
    workspace.RunNetOnce(net)
    np.testing.assert_allclose(workspace.FetchBlob(str(grads["x1"])), np.full((2, 2), 2 / 4.0))


def test_python_op_pass_workspace_builder_tuple_and_errors():
    def f(inputs, outputs, ws):
        outputs[0].feed(ws.blobs["internal"].fetch() + 1)

    net = core.Net("pyws")
    net.GivenTensorFill([], ["internal"], values=[1.0, 2.0], shape=[2])
    net.Python(f, pass_workspace=True)([], ["y"])
    workspace.RunNetOnce(net)
    np.testing.assert_array_equal(workspace.FetchBlob("y"), [2.0, 3.0])

    built = core.Net("pybuilder")
    built.Python((_scaled_copy, [3.0], {}))(["y"], ["z"])
    workspace.RunNetOnce(built)
    np.testing.assert_array_equal(workspace.FetchBlob("z"), [6.0, 9.0])

    def broken(inputs, outputs):
        raise RuntimeError("This is an intentional exception.")
    with pytest.raises(Caffe2Error, match="This is an intentional exception"):
        workspace.RunOperatorOnce(core.CreatePythonOperator(broken, [], []))


def _scaled_copy(factor):
    def op(inputs, outputs):
        outputs[0].feed(inputs[0].data * factor)
    return op


def test_distance_shape_mismatch_is_named():
    workspace.FeedBlob("a", np.zeros((2, 3), np.float32))
    workspace.FeedBlob("b", np.zeros((2, 4), np.float32))
    with pytest.raises(Caffe2Error, match=r"SquaredL2Distance: X \[2, 3\] and Y \[2, 4\]"):
        workspace.RunOperatorOnce(core.CreateOperator("SquaredL2Distance", ["a", "b"], ["d"]))


def test_free_releases_blobs_in_place():
    workspace.FeedBlob("big", np.ones((100, 100), np.float32))
    workspace.RunOperatorOnce(core.CreateOperator("Free", ["big"], ["big"]))
    assert workspace.FetchBlob("big").size == 0
