"""core.GradientRegistry against real Caffe2: the gradient OperatorDefs (types, blob names,
arguments) and the values they compute (fixture: tests/data/caffe2_reference/gradient_ops.json,
made by tests/data/caffe2_reference/tools/gen_gradient_ops.py with torch 1.4.0's Caffe2)."""
import json
import os

import numpy as np
import pytest

from food101.caffe2 import core, workspace
from tests.support import REFERENCE

with open(os.path.join(REFERENCE, "gradient_ops.json")) as _f:
    CASES = json.load(_f)


def _ident(case):
    return "%s-%s" % (case["op"]["type"], "-".join("%s=%s" % kv for kv in sorted(case["args"].items())))


@pytest.fixture(autouse=True)
def fresh_workspace():
    workspace.ResetWorkspace()
    yield
    workspace.ResetWorkspace()


@pytest.mark.parametrize("case", CASES, ids=[_ident(c) for c in CASES])
def test_gradient_ops_match_caffe2(case):
    op = core.CreateOperator(case["op"]["type"], case["op"]["input"], case["op"]["output"],
                             **case["args"])
    g_output = [o + "_grad" for o in op.output]
    grad_ops, g_input = core.GradientRegistry.GetGradientForOp(op, g_output)
    got = [{"type": g.type, "input": list(g.input), "output": list(g.output),
            "args": sorted(a.name for a in g.arg)} for g in grad_ops]
    assert got == case["grad_ops"]
    assert [None if g is None else str(g) for g in g_input] == case["g_input"]
    assert all(g.is_gradient_op for g in grad_ops)
    for name, value in case["feeds"].items():
        dtype = np.int32 if name == "L" else np.float32
        workspace.FeedBlob(name, np.asarray(value, dtype=dtype))
    workspace.RunOperatorOnce(op)
    for name, value in case["seeds"].items():
        workspace.FeedBlob(name, np.asarray(value, dtype=np.float32))
    workspace.RunOperatorsOnce(grad_ops)
    for name, expected in case["grads"].items():
        np.testing.assert_allclose(workspace.FetchBlob(name), np.asarray(expected), rtol=1e-4,
                                   atol=1e-5, err_msg=name)


def test_generic_gradient_for_an_op_without_a_caffe2_entry():
    """Ops without a gradient entry get one AutogradOpGradient op with Caffe2's blob names."""
    op = core.CreateOperator("PadImage", ["X"], ["Y"], pad=1)
    grad_ops, g_input = core.GradientRegistry.GetGradientForOp(op, ["Y_grad"])
    assert [g.type for g in grad_ops] == ["AutogradOpGradient"] and str(g_input[0]) == "X_grad"
    workspace.FeedBlob("X", np.ones((1, 1, 3, 3), dtype=np.float32))
    y_grad = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    workspace.FeedBlob("Y_grad", y_grad)
    workspace.RunOperatorsOnce(grad_ops)
    # zero padding: the input's gradient is the interior of the output's
    np.testing.assert_allclose(workspace.FetchBlob("X_grad"), y_grad[:, :, 1:4, 1:4])


def test_register_gradient_for_a_user_op_takes_precedence():
    @core.GradientRegistry.RegisterGradient("Softsign")
    def softsign_grad(op, g_output):
        return [core.CreateOperator("Scale", [g_output[0]], [op.input[0] + "_grad"], scale=3.0)], \
            [op.input[0] + "_grad"]
    try:
        op = core.CreateOperator("Softsign", ["X"], ["Y"])
        grad_ops, g_input = core.GradientRegistry.GetGradientForOp(op, ["Y_grad"])
        assert [g.type for g in grad_ops] == ["Scale"]
    finally:
        del core.GradientRegistry.gradient_registry_["Softsign"]


def test_backward_pass_sums_gradients_of_a_blob_read_twice():
    ops = [core.CreateOperator("Relu", ["X"], ["A"]), core.CreateOperator("Sigmoid", ["X"], ["B"]),
           core.CreateOperator("Add", ["A", "B"], ["C"])]
    x = np.array([-1.0, 0.5, 2.0], dtype=np.float32)
    workspace.FeedBlob("X", x)
    for op in ops:
        workspace.RunOperatorOnce(op)
    grad_ops, grad_map = core.GradientRegistry.GetBackwardPass(ops, {"C": "C_grad"})
    workspace.FeedBlob("C_grad", np.ones(3, dtype=np.float32))
    workspace.RunOperatorsOnce(grad_ops)
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(workspace.FetchBlob(str(grad_map["X"])), (x > 0) + s * (1 - s),
                               rtol=1e-6)


def test_ops_without_gradient_give_none():
    op = core.CreateOperator("StopGradient", ["X"], ["Y"])
    assert core.GradientRegistry.GetGradientForOp(op, ["Y_grad"]) == ([], [None])
