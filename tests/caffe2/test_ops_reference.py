"""Every operator case real Caffe2 recorded (tests/data/caffe2_reference/ops/index.json):
forward outputs and autograd gradients must equal Caffe2's within the case's tolerance.

Adding a case to index.json adds a test here.
"""
import json

import numpy as np
import pytest
import torch

from tests.support import reference_path
from food101.caffe2 import executor, workspace
from food101.caffe2.ops import registry
from food101.caffe2.proto import caffe2_pb2, load_net

OPS = reference_path("ops")
with open(reference_path("ops", "index.json")) as _fh:
    CASES = json.load(_fh)


def run_case(case, data, device_option=None):
    """Run the case's net on its fed inputs; returns (outputs, gradients) as numpy dicts.

    With grad_outputs, gradient ops are appended with `gradin:Y` fed as dL/dY, as the
    generator fed Caffe2's AddGradientOperators."""
    net = load_net(reference_path("ops", case["net"]))
    if device_option is not None:
        net.device_option.CopyFrom(device_option)
    for name in case["inputs"]:
        workspace.FeedBlob(name, data["in:" + name], device_option=device_option)
    grad_map = {}
    if case["grad_outputs"]:
        seeds = {y: y + "_grad_in" for y in case["grad_outputs"]}
        for y, seed in seeds.items():
            workspace.FeedBlob(seed, data["gradin:" + y], device_option=device_option)
        grad_map = executor.add_gradient_ops(net, seeds)
    workspace.RunNetOnce(net)
    outputs = {y: workspace.FetchBlob(y) for y in case["outputs"]}
    grads = {x: workspace.FetchBlob(grad_map[x]) for x in case["grads"] if x in grad_map}
    return outputs, grads


def _assert_close(actual, expected, tol, what):
    assert actual.shape == expected.shape, "%s: shape %s, Caffe2 %s" % (what, actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, "%s: dtype %s, Caffe2 %s" % (what, actual.dtype, expected.dtype)
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol, err_msg=what)


def _load_case(case):
    registry.lookup(case["op_type"])  # every fixture op must exist: an unknown one fails here
    return np.load(reference_path("ops", case["data"]))


def _check(case, data, outputs, grads):
    for name in case["outputs"]:
        _assert_close(outputs[name], data["out:" + name], case["tol"], "output " + name)
    for name in case["grads"]:
        assert name in grads, "no gradient reached input %s" % name
        _assert_close(grads[name], data["grad:" + name], case["tol"], "gradient of " + name)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_matches_caffe2(case):
    data = _load_case(case)
    _check(case, data, *run_case(case, data))


@pytest.mark.cuda
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_matches_caffe2_on_cuda(case, monkeypatch):
    data = _load_case(case)
    # TF32 convolutions and matmuls round to ~1e-3; the reference is full float32
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    option = caffe2_pb2.DeviceOption(device_type=caffe2_pb2.CUDA, device_id=0)
    _check(case, data, *run_case(case, data, device_option=option))
