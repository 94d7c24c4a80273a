"""The executor's public API for training and diagnostics: op arguments set so that eager and
compiled nets use them, running a range of ops with an observer, the typed backward spec, and a
frozen prefix that runs without autograd recording."""
import numpy as np
import pytest
import torch

from food101.caffe2 import core, executor, workspace
from food101.caffe2.compiled import CompileOptions
from food101.caffe2.ops import registry
from food101.caffe2.utils import ArgsToDict


def _scale_net(name):
    net = core.Net(name)
    net.Scale("X", "Y", scale=2.0)
    return net


@pytest.mark.parametrize("compiled", [False, True])
def test_set_op_arguments_reaches_the_next_run(compiled):
    workspace.FeedBlob("X", np.ones(3, np.float32))
    net = _scale_net("scale_%s" % compiled)
    workspace.CreateNet(net, compile=CompileOptions(backend="eager") if compiled else None)
    workspace.RunNet(net.Proto().name)
    assert np.array_equal(workspace.FetchBlob("Y"), [2, 2, 2])
    prepared = workspace.current().nets[net.Proto().name]
    prepared.set_op_arguments(0, scale=-3.0)
    workspace.RunNet(net.Proto().name)
    assert np.array_equal(workspace.FetchBlob("Y"), [-3, -3, -3])
    assert ArgsToDict(prepared.netdef.op[0].arg)["scale"] == -3.0
    assert ArgsToDict(net.Proto().op[0].arg)["scale"] == 2.0  # the caller's proto stays


def test_set_op_arguments_with_a_bad_value_names_the_op():
    workspace.FeedBlob("X", np.ones(3, np.float32))
    net = core.Net("pool_args")
    net.MaxPool("X4", "Y", kernel=2)
    workspace.FeedBlob("X4", np.ones((1, 1, 4, 4), np.float32))
    workspace.CreateNet(net)
    with pytest.raises(executor.Caffe2Error, match=r"op #0 \(MaxPool\).*kernel"):
        workspace.current().nets["pool_args"].set_op_arguments(0, kernel=-1)


def test_run_steps_runs_a_range_and_reports_each_op():
    workspace.FeedBlob("X", np.array([-1.0, 2.0], np.float32))
    net = core.Net("range")
    net.Relu("X", "A")
    net.Scale("A", "B", scale=10.0)
    net.Scale("B", "C", scale=10.0)
    workspace.CreateNet(net)
    prepared = workspace.current().nets["range"]
    seen = []
    prepared.run_steps(0, 2, observe=lambda i, inputs, outputs: seen.append(
        (i, [v.tolist() for v in inputs], [v.tolist() for v in outputs])))
    assert seen == [(0, [[-1, 2]], [[0, 2]]), (1, [[0, 2]], [[0, 20]])]
    assert not workspace.HasBlob("C")
    assert len(prepared) == 3 and prepared.forward_end == 3


def _frozen_net():
    net = core.Net("frozen")
    net.FC(["X", "w0", "b0"], "h")
    net.Relu("h", "h")
    net.StopGradient("h", "h_frozen")
    net.FC(["h_frozen", "w1", "b1"], "y")
    net.AveragedLoss("y", "loss")
    grads = net.AddGradientOperators(["loss"])
    return net, grads


def _feed_frozen():
    rng = np.random.RandomState(0)
    for name, shape in (("X", (4, 3)), ("w0", (5, 3)), ("b0", (5,)), ("w1", (2, 5)), ("b1", (2,))):
        workspace.FeedBlob(name, rng.randn(*shape).astype(np.float32))


def test_backward_spec_is_typed_and_the_frozen_prefix_is_not_recorded(monkeypatch):
    _feed_frozen()
    net, grads = _frozen_net()
    modes = []
    relu = registry.lookup("Relu")
    original = relu.fn

    def spy(X):
        modes.append(torch.is_grad_enabled())
        return original(X)

    monkeypatch.setattr(relu, "fn", spy)
    workspace.CreateNet(net)
    prepared = workspace.current().nets["frozen"]
    spec = prepared.backward
    assert isinstance(spec, executor.BackwardSpec)
    assert spec.index == prepared.forward_end
    assert spec.losses == ["loss"] and "w1" in spec.leaves and "w0" not in spec.wrt
    stop_gradient_index = [op.type for op in net.Proto().op].index("StopGradient")
    assert spec.record_from == stop_gradient_index
    workspace.RunNet("frozen")
    assert modes == [False]  # the Relu before StopGradient ran without autograd recording
    assert "w0" not in grads and workspace.FetchBlob(grads["w1"]).shape == (2, 5)
    # same gradient as torch autograd on the same computation
    h = torch.relu(torch.from_numpy(workspace.FetchBlob("X")) @ torch.from_numpy(
        workspace.FetchBlob("w0")).T + torch.from_numpy(workspace.FetchBlob("b0")))
    w1 = torch.from_numpy(workspace.FetchBlob("w1")).requires_grad_()
    y = h @ w1.T + torch.from_numpy(workspace.FetchBlob("b1"))
    (expected,) = torch.autograd.grad(y.mean(), [w1])
    np.testing.assert_allclose(workspace.FetchBlob(grads["w1"]), expected.numpy(), rtol=1e-6)
