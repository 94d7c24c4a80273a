"""Sparse gradients (Gather -> GradientSlice), the update ops Caffe2's optimizer_test.py needs
and the ops of its hypothesis_test.py, against real Caffe2's outputs on the same inputs (fixture:
tests/data/caffe2_reference/optim_ops.json from tools/gen_optim_ops.py)."""
import json
import os

import numpy as np
import pytest

from food101.caffe2 import core, model_helper, optimizer, workspace
from food101.caffe2.errors import Caffe2Error
from tests.support import REFERENCE

with open(os.path.join(REFERENCE, "optim_ops.json")) as _f:
    CASES = json.load(_f)


@pytest.fixture(autouse=True)
def fresh_workspace():
    workspace.ResetWorkspace()
    yield
    workspace.ResetWorkspace()


@pytest.mark.parametrize("case", CASES, ids=["%s-%d" % (c["type"], i) for i, c in enumerate(CASES)])
def test_op_matches_caffe2(case):
    for name, (value, dtype) in case["feeds"].items():
        workspace.FeedBlob(name, np.asarray(value, dtype=dtype))
    workspace.RunOperatorOnce(core.CreateOperator(case["type"], list(case["feeds"]),
                                                  list(case["outputs"]), **case["args"]))
    for name, (value, dtype) in case["outputs"].items():
        got = workspace.FetchBlob(name)
        expected = np.asarray(value, dtype=dtype)
        assert got.shape == expected.shape, name
        assert got.dtype == expected.dtype, name
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=name)


def test_gather_refuses_out_of_range_indices():
    workspace.FeedBlob("D", np.zeros((2, 3), np.float32))
    workspace.FeedBlob("I", np.array([-3], np.int32))
    with pytest.raises(Caffe2Error, match="out of DATA bounds"):
        workspace.RunOperatorOnce(core.CreateOperator("Gather", ["D", "I"], ["O"]))


def _sparse_model():
    model = model_helper.ModelHelper(name="sparse")
    w = model.param_init_net.ConstantFill([], "w", shape=[5], value=0.0)
    model.params.append(w)
    picked = model.net.Gather([w, "indices"], "gather")
    out = model.net.ReduceFrontSum(picked, "sum")
    sq = model.net.SquaredL2Distance([out, "label"], "sq")
    loss = model.net.AveragedLoss(sq, "avg_loss")
    return model, loss


def test_param_read_only_by_gather_gets_a_gradient_slice():
    model, loss = _sparse_model()
    grad_map = model.AddGradientOperators([loss])
    assert grad_map["w"] == core.GradientSlice("indices", "gather_grad")
    assert isinstance(grad_map["w"].values, core.BlobReference)
    assert str(grad_map["gather"]) == "gather_grad"


def test_sparse_sgd_step_matches_caffe2():
    # real Caffe2: indices [0, 0, 3], label 2 -> gather_grad [-2, -2, -2], w [.4, 0, 0, .2, 0]
    model, loss = _sparse_model()
    model.AddGradientOperators([loss])
    optimizer.build_sgd(model, 0.1)
    assert [op.type for op in model.net.Proto().op][-1] == "ScatterWeightedSum"
    workspace.RunNetOnce(model.param_init_net)
    workspace.FeedBlob("indices", np.array([0, 0, 3], np.int32))
    workspace.FeedBlob("label", np.array(2.0, np.float32))
    workspace.RunNetOnce(model.net)
    np.testing.assert_allclose(workspace.FetchBlob("gather_grad"), [-2, -2, -2])
    np.testing.assert_allclose(workspace.FetchBlob("w"), [0.4, 0, 0, 0.2, 0], rtol=1e-6)


def test_lars_rescales_the_learning_rate_and_lr_injection_scales_it():
    optimizer.reset_optimizer_instance_count()
    model = model_helper.ModelHelper(name="lars")
    w = model.param_init_net.GivenTensorFill([], "w", shape=[2], values=[3.0, 4.0])
    model.params.append(w)
    y = model.net.DotProduct([w, "x"], "y")
    loss = model.net.AveragedLoss(y, "loss")
    model.AddGradientOperators([loss])
    optimizer.build_sgd(model, 0.1, lars=0.5, max_gradient_norm=100.0, allow_lr_injection=True)
    types = [op.type for op in model.net.Proto().op]
    assert "Lars" in types and "CopyFromCPUInput" in types
    workspace.RunNetOnce(model.param_init_net)
    workspace.FeedBlob("x", np.array([1.0, 0.0], np.float32))
    workspace.RunNetOnce(model.net)
    # 1-D DotProduct is elementwise: grad = [0.5, 0]; |grad| / |w| = 0.5 / 5 -> the lr of 0.1
    # is rescaled by trust / (0.1 + wd 0 + offset 0.5)
    lars = workspace.FetchBlob("SgdOptimizer_0_w_lars_cpu")
    np.testing.assert_allclose(lars, [1 / 0.6], rtol=1e-6)
    np.testing.assert_allclose(workspace.FetchBlob("w"), [3.0 - 0.1 * 0.5 / 0.6, 4.0], rtol=1e-6)
    assert workspace.FetchBlob("lr_multiplier").shape == ()


def test_last_n_window_collector_matches_caffe2():
    # real Caffe2, window 3: rows 0..2, then 2 more wrap to the front, then 4 (> 3) restart it
    net = core.Net("collect")
    net.LastNWindowCollector(["output", "next", "input"], ["output", "next"], num_to_collect=3)
    workspace.FeedBlob("next", np.array(0, dtype=np.int32))
    workspace.CreateBlob("output")
    workspace.FeedBlob("input", np.arange(3, dtype=np.float32).reshape(3, 1))
    workspace.CreateNet(net)
    expected = [([0, 1, 2], 0), ([3, 4, 2], 2), ([6, 7, 8], 0)]
    feeds = [np.arange(3), np.arange(3, 5), np.arange(5, 9)]
    for feed, (window, cursor) in zip(feeds, expected):
        workspace.FeedBlob("input", feed.astype(np.float32).reshape(-1, 1))
        workspace.RunNet("collect")
        np.testing.assert_array_equal(workspace.FetchBlob("output").ravel(), window)
        assert int(workspace.FetchBlob("next")) == cursor


def test_blobs_queue_round_trip_close_and_timeout():
    workspace.RunOperatorOnce(core.CreateOperator("CreateBlobsQueue", [], ["q"], capacity=2,
                                                  num_blobs=1))
    workspace.FeedBlob("x", np.array([1.0, 2.0], np.float32))
    workspace.RunOperatorOnce(core.CreateOperator("EnqueueBlobs", ["q", "x"], ["x"]))
    workspace.RunOperatorOnce(core.CreateOperator("SafeDequeueBlobs", ["q"], ["y", "s"]))
    np.testing.assert_array_equal(workspace.FetchBlob("y"), [1.0, 2.0])
    assert not workspace.FetchBlob("s")
    with pytest.raises(Caffe2Error, match="timed out"):
        workspace.RunOperatorOnce(core.CreateOperator("DequeueBlobs", ["q"], ["y"],
                                                      timeout_secs=0.05))
    workspace.RunOperatorOnce(core.CreateOperator("CloseBlobsQueue", ["q"], []))
    workspace.RunOperatorOnce(core.CreateOperator("SafeEnqueueBlobs", ["q", "x"], ["x", "s"]))
    assert workspace.FetchBlob("s")
    workspace.RunOperatorOnce(core.CreateOperator("SafeDequeueBlobs", ["q"], ["y", "s"]))
    assert workspace.FetchBlob("s")
