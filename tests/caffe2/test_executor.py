"""The executor: preparation once, clear errors, gradients through autograd with Caffe2 naming."""
import numpy as np
import pytest
import torch

from food101.caffe2 import core, errors, executor, workspace
from food101.caffe2.ops import registry
from food101.caffe2.proto import caffe2_pb2


def make_net(name, ops, external_input=()):
    net = caffe2_pb2.NetDef(name=name)
    for op_type, inputs, outputs, args in ops:
        op = caffe2_pb2.OperatorDef(type=op_type, input=inputs, output=outputs)
        op.arg.extend(core.MakeArgument(k, v) for k, v in args.items())
        net.op.append(op)
    net.external_input.extend(external_input)
    return net


def test_unknown_op_names_op_net_and_closest():
    net = make_net("mynet", [("Rleu", ["X"], ["Y"], {})])
    workspace.FeedBlob("X", np.ones(3, np.float32))
    with pytest.raises(errors.UnknownOperatorError) as info:
        workspace.CreateNet(net)
    message = str(info.value)
    assert "'Rleu'" in message and "'mynet'" in message and "Relu" in message


def test_missing_input_names_op_blob_and_existing_blobs():
    net = make_net("n", [("Relu", ["X"], ["Y"], {}), ("Relu", ["Z"], ["W"], {})])
    workspace.FeedBlob("X", np.ones(3, np.float32))
    with pytest.raises(errors.MissingBlobError) as info:
        workspace.RunNetOnce(net)
    message = str(info.value)
    assert "op #1 (Relu)" in message and "'Z'" in message and "X" in message


def test_shape_mismatch_is_an_operator_error_naming_the_op():
    net = make_net("n", [("Mul", ["A", "B"], ["C"], {})])
    workspace.FeedBlob("A", np.ones((2, 3), np.float32))
    workspace.FeedBlob("B", np.ones((4, 5), np.float32))
    with pytest.raises(errors.OperatorError) as info:
        workspace.RunNetOnce(net)
    message = str(info.value)
    assert "op #0 (Mul)" in message and "[2, 3]" in message and "[4, 5]" in message


def test_create_net_parses_once(monkeypatch):
    net = make_net("loop", [("Relu", ["X"], ["Y"], {})])
    workspace.FeedBlob("X", np.array([-1.0, 2.0], np.float32))
    calls = []
    real = registry.parse_arguments
    monkeypatch.setattr(executor, "parse_arguments", lambda *a: calls.append(1) or real(*a))
    workspace.CreateNet(net)
    workspace.RunNet("loop", num_iter=5)
    assert len(calls) == 1
    np.testing.assert_array_equal(workspace.FetchBlob("Y"), [0.0, 2.0])


def test_create_net_refuses_a_different_net_of_the_same_name():
    workspace.FeedBlob("X", np.ones(2, np.float32))
    workspace.CreateNet(make_net("same", [("Relu", ["X"], ["Y"], {})]))
    with pytest.raises(errors.Caffe2Error, match="overwrite"):
        workspace.CreateNet(make_net("same", [("Sigmoid", ["X"], ["Y"], {})]))
    workspace.CreateNet(make_net("same", [("Sigmoid", ["X"], ["Y"], {})]), overwrite=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_is_a_clear_error():
    option = caffe2_pb2.DeviceOption(device_type=caffe2_pb2.CUDA, device_id=0)
    with pytest.raises(errors.Caffe2Error, match="no usable CUDA GPU"):
        workspace.FeedBlob("X", np.ones(2, np.float32), device_option=option)
    net = make_net("gpu", [("Relu", ["X"], ["Y"], {})])
    net.device_option.CopyFrom(option)
    workspace.FeedBlob("X", np.ones(2, np.float32))
    with pytest.raises(errors.Caffe2Error, match="CUDA device 0"):
        workspace.CreateNet(net)


def test_workspaces_switch_and_reset():
    workspace.FeedBlob("a", np.ones(1, np.float32))
    workspace.SwitchWorkspace("other", create_if_missing=True)
    assert not workspace.HasBlob("a") and workspace.CurrentWorkspace() == "other"
    with pytest.raises(errors.Caffe2Error):
        workspace.SwitchWorkspace("missing")
    workspace.SwitchWorkspace("default")
    assert workspace.Blobs() == ["a"]
    workspace.ResetWorkspace()
    assert workspace.Blobs() == []


def _chain_net():
    """x -> FC -> Relu (in place) -> StopGradient branch and a loss; labels are not differentiable."""
    return make_net("chain", [
        ("FC", ["x", "w", "b"], ["h"], {}),
        ("Relu", ["h"], ["h"], {}),
        ("StopGradient", ["h"], ["h_stopped"], {}),
        ("Mul", ["h_stopped", "h"], ["hh"], {}),
        ("Softmax", ["hh"], ["p"], {}),
        ("LabelCrossEntropy", ["p", "label"], ["xent"], {}),
        ("AveragedLoss", ["xent"], ["loss"], {}),
    ])


def test_gradients_match_torch_autograd_with_caffe2_names():
    rng = np.random.RandomState(0)
    x, w, b = rng.randn(4, 5), rng.randn(3, 5), rng.randn(3)
    label = np.array([0, 2, 1, 2], np.int32)
    net = _chain_net()
    grad_map = executor.add_gradient_ops(net, ["loss"])
    assert grad_map["loss"] == "loss_autogen_grad"
    assert {"x", "w", "b", "h", "hh", "p", "xent"} <= set(grad_map)
    assert "label" not in grad_map
    for name, value in dict(x=x, w=w, b=b).items():
        workspace.FeedBlob(name, value.astype(np.float32))
    workspace.FeedBlob("label", label)
    workspace.RunNetOnce(net)

    tx, tw, tb = (torch.tensor(v, dtype=torch.float32, requires_grad=True) for v in (x, w, b))
    pre = tx @ tw.T + tb
    h = torch.relu(pre)
    p = torch.softmax(h.detach() * h, dim=1)
    loss = -torch.log(p[torch.arange(4), torch.from_numpy(label).long()]).mean()
    gx, gw, gb, gpre = torch.autograd.grad(loss, [tx, tw, tb, pre])
    np.testing.assert_allclose(workspace.FetchBlob("loss"), loss.item(), rtol=1e-6)
    np.testing.assert_allclose(workspace.FetchBlob("x_grad"), gx.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(workspace.FetchBlob("w_grad"), gw.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(workspace.FetchBlob("b_grad"), gb.numpy(), rtol=1e-5, atol=1e-7)
    # in-place Relu: h_grad holds the gradient of the first version (FC's output), as in Caffe2
    np.testing.assert_allclose(workspace.FetchBlob("h_grad"), gpre.numpy(), rtol=1e-5, atol=1e-7)
    # the workspace keeps plain tensors, not autograd leaves
    assert not workspace.FetchTensor("w").requires_grad


def test_ops_after_the_gradient_run_without_autograd_and_update_params():
    rng = np.random.RandomState(1)
    net = _chain_net()
    executor.add_gradient_ops(net, ["loss"])
    update = caffe2_pb2.OperatorDef(type="WeightedSum", input=["w", "one", "w_grad", "lr"], output=["w"])
    net.op.append(update)
    w0 = rng.randn(3, 5).astype(np.float32)
    for name, value in dict(x=rng.randn(4, 5), w=w0, b=rng.randn(3)).items():
        workspace.FeedBlob(name, np.asarray(value, np.float32))
    workspace.FeedBlob("label", np.array([0, 2, 1, 2], np.int32))
    workspace.FeedBlob("one", np.ones(1, np.float32))
    workspace.FeedBlob("lr", np.full(1, -0.5, np.float32))
    workspace.CreateNet(net)
    workspace.RunNet("chain")
    expected = w0 - 0.5 * workspace.FetchBlob("w_grad")
    np.testing.assert_allclose(workspace.FetchBlob("w"), expected, rtol=1e-6)
    assert not workspace.FetchTensor("w").requires_grad


def test_branch_that_reaches_no_loss_gets_no_gradient():
    net = make_net("branch", [
        ("Relu", ["x"], ["a"], {}),
        ("Sigmoid", ["x"], ["unused"], {}),
        ("AveragedLoss", ["a"], ["loss"], {}),
    ])
    grad_map = executor.add_gradient_ops(net, ["loss"])
    assert "unused" not in grad_map and "x" in grad_map
