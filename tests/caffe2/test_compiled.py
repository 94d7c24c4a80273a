"""Compiled execution equals eager execution (outputs, gradients, parameter updates)."""
import warnings

import numpy as np
import pytest
import torch

from tests.support import reference_path
from food101.caffe2 import core, executor, workspace
from food101.caffe2.compiled import CompileOptions, cpu_accelerates
from food101.caffe2.proto import caffe2_pb2, load_net

ZOO = reference_path("zoo", "squeezenet")


def squeezenet_training_net(name):
    """Zoo SqueezeNet + loss + gradients for every param + a plain SGD update per param."""
    net = caffe2_pb2.NetDef()
    net.CopyFrom(load_net(ZOO + "/predict_net.pb"))
    net.name = name
    params = [p for p in net.external_input if p != "data"]
    net.op.extend([
        caffe2_pb2.OperatorDef(type="LabelCrossEntropy", input=["softmaxout", "label"], output=["xent"]),
        caffe2_pb2.OperatorDef(type="AveragedLoss", input=["xent"], output=["loss"]),
    ])
    grads = executor.add_gradient_ops(net, ["loss"])
    for p in params:
        net.op.append(caffe2_pb2.OperatorDef(type="WeightedSum", input=[p, "ONE", grads[p], "LR"],
                                             output=[p]))
    return net, params


def run_training(compile_options, iterations=2, size=67):
    workspace.ResetWorkspace()
    workspace.RunNetOnce(load_net(ZOO + "/init_net.pb"))
    rng = np.random.RandomState(0)
    workspace.FeedBlob("ONE", np.ones(1, np.float32))
    workspace.FeedBlob("LR", np.full(1, -0.05, np.float32))
    net, params = squeezenet_training_net("train")
    losses = []
    for it in range(iterations):
        workspace.FeedBlob("data", (rng.rand(2, 3, size, size) * 255 - 120).astype(np.float32))
        workspace.FeedBlob("label", rng.randint(0, 1000, 2).astype(np.int32))
        if it == 0:
            workspace.CreateNet(net, compile=compile_options)
        workspace.RunNet("train")
        losses.append(float(workspace.FetchBlob("loss")))
    return losses, {p: workspace.FetchBlob(p) for p in params}, workspace.FetchBlob("conv1_w_grad")


@pytest.mark.parametrize("channels_last", [False, True])
def test_compiled_training_matches_eager(channels_last):
    iterations = 1 if channels_last else 2  # tracing twice costs time; one step checks the layout
    eager_losses, eager_params, eager_grad = run_training(None, iterations)
    losses, params, grad = run_training(CompileOptions(backend="aot_eager", channels_last=channels_last),
                                        iterations)
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-5)
    np.testing.assert_allclose(grad, eager_grad, rtol=1e-4, atol=2e-5)
    for name, value in eager_params.items():
        # channels_last changes the convolution's summation order: differences of a few 1e-6
        np.testing.assert_allclose(params[name], value, rtol=1e-4, atol=2e-5, err_msg=name)


def test_compiled_type_in_netdef_selects_compiled_execution():
    workspace.FeedBlob("X", np.array([-1.0, 2.0], np.float32))
    net = caffe2_pb2.NetDef(name="typed", type="compiled")
    net.op.append(caffe2_pb2.OperatorDef(type="Relu", input=["X"], output=["Y"]))
    workspace.CreateNet(net)
    from food101.caffe2.compiled import CompiledNet
    assert isinstance(workspace.current().nets["typed"], CompiledNet)


def test_uncompilable_group_falls_back_with_a_log_line(caplog):
    workspace.FeedBlob("X", np.array([-1.0, 2.0], np.float32))
    net = caffe2_pb2.NetDef(name="fallback")
    net.op.append(caffe2_pb2.OperatorDef(type="Relu", input=["X"], output=["Y"]))
    def failing_backend(graph, example_inputs):
        raise RuntimeError("this backend cannot compile anything")

    workspace.CreateNet(net, compile=CompileOptions(backend=failing_backend))
    with caplog.at_level("WARNING"):
        workspace.RunNet("fallback")
    np.testing.assert_array_equal(workspace.FetchBlob("Y"), [0.0, 2.0])
    assert "running them eagerly" in caplog.text


@pytest.mark.cuda
def test_compiled_bf16_training_on_cuda_tracks_fp32():
    option = caffe2_pb2.DeviceOption(device_type=caffe2_pb2.CUDA, device_id=0)
    results = {}
    for label, options in (("fp32", None), ("bf16", CompileOptions(channels_last=True, autocast="bfloat16"))):
        workspace.ResetWorkspace()
        init = load_net(ZOO + "/init_net.pb")
        init.device_option.CopyFrom(option)
        workspace.RunNetOnce(init)
        rng = np.random.RandomState(0)
        workspace.FeedBlob("ONE", np.ones(1, np.float32), option)
        workspace.FeedBlob("LR", np.full(1, -0.01, np.float32), option)
        workspace.FeedBlob("data", (rng.rand(8, 3, 131, 131) * 255 - 120).astype(np.float32), option)
        workspace.FeedBlob("label", rng.randint(0, 1000, 8).astype(np.int32), option)
        net, _ = squeezenet_training_net("train")
        net.device_option.CopyFrom(option)
        workspace.CreateNet(net, compile=options)
        workspace.RunNet("train", num_iter=2)
        results[label] = float(workspace.FetchBlob("loss"))
        assert workspace.FetchTensor("conv10_w").dtype == torch.float32  # fp32 master weights
    assert abs(results["bf16"] - results["fp32"]) < 0.05 * abs(results["fp32"])


def _scale_net(name):
    net = core.Net(name)
    net.Scale("X", "Y", scale=2.0)
    return net


def test_cpu_defaults_are_fp32_nchw_without_warnings():
    workspace.FeedBlob("X", np.ones((1, 2, 3, 3), np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        workspace.CreateNet(_scale_net("cpu_defaults"), compile=CompileOptions(backend="eager"))
    net = workspace.current().nets["cpu_defaults"]
    assert net.channels_last is False and net.options.autocast is None


@pytest.mark.parametrize("option, feature", [(dict(channels_last=True), "channels_last"),
                                             (dict(autocast="bfloat16"), "bfloat16")])
def test_an_option_that_slows_this_cpu_warns(option, feature):
    if cpu_accelerates(feature):
        pytest.skip("this CPU accelerates %s" % feature)
    workspace.FeedBlob("X", np.ones((1, 2, 3, 3), np.float32))
    with pytest.warns(RuntimeWarning, match="slower"):
        workspace.CreateNet(_scale_net("slow_" + feature),
                            compile=CompileOptions(backend="eager", **option))
    workspace.RunNet("slow_" + feature)  # still runs, and right
    assert np.array_equal(workspace.FetchBlob("Y"), np.full((1, 2, 3, 3), 2, np.float32))
