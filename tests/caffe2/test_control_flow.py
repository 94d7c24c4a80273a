"""If / While / Do ops through brew.cond / brew.loop (values from Caffe2 1.4's brew_test)."""
import numpy as np
import pytest

from food101.caffe2 import brew, core, workspace
from food101.caffe2.model_helper import ModelHelper


@pytest.fixture(autouse=True)
def fresh():
    workspace.ResetWorkspace()
    yield
    workspace.ResetWorkspace()


def test_cond_runs_the_branch_the_condition_picks():
    workspace.FeedBlob("cond", np.array(True))
    workspace.FeedBlob("then_value", np.array(1))
    workspace.FeedBlob("else_value", np.array(2))
    then_model, else_model = ModelHelper(name="then_m"), ModelHelper(name="else_m")
    then_model.net.Copy("then_value", "output_blob")
    else_model.net.Copy("else_value", "output_blob")
    model = ModelHelper(name="cond_m")
    brew.cond(model, "cond", ["then_value", "else_value", "output_blob"], then_model, else_model)
    workspace.RunNetOnce(model.net)
    assert workspace.FetchBlob("output_blob") == 1
    workspace.FeedBlob("cond", np.array(False))
    workspace.RunNetOnce(model.net)
    assert workspace.FetchBlob("output_blob") == 2


def test_loop_recomputes_its_condition_and_keeps_local_blobs_inside():
    for name, value in [("ONE", 1), ("TWO", 2), ("TEN", 10), ("counter", 0), ("output_blob", 0)]:
        workspace.FeedBlob(name, np.array(value))
    workspace.FeedBlob("cond", np.array(True))
    body, cond = ModelHelper(name="body_m"), ModelHelper(name="cond_body_m")
    body.net.Add(["output_blob", "TWO"], "output_blob")
    cond.net.Add(["counter", "ONE"], "counter")
    cond.net.Copy(cond.net.LT(["counter", "TEN"]), "cond")  # LT's output is local to the Do
    model = ModelHelper(name="loop_m")
    brew.loop(model, "cond", ["cond", "ONE", "TWO", "TEN", "counter", "output_blob"], body, cond)
    workspace.RunNetOnce(model.net)
    assert workspace.FetchBlob("output_blob") == 18  # Caffe2: 18
    assert not any("LT" in b for b in workspace.Blobs())


def test_gradients_flow_through_the_branch_taken():
    workspace.FeedBlob("w", np.array([2.0], np.float32))
    workspace.FeedBlob("x", np.array([3.0], np.float32))
    for flag, expected in [(True, 3.0), (False, 6.0)]:
        workspace.FeedBlob("c", np.array(flag))
        then_net, else_net = core.Net("t"), core.Net("e")
        then_net.Mul(["w", "x"], "y")
        else_net.Mul(["w", "x"], "wx")
        else_net.Add(["wx", "wx"], "y")
        net = core.Net("g")
        from food101.caffe2.control_ops_util import add_if_op
        add_if_op(net, "c", ["w", "x", "y"], then_net, else_net)
        net.AveragedLoss("y", "loss")
        grads = net.AddGradientOperators(["loss"])
        workspace.RunNetOnce(net)
        np.testing.assert_allclose(workspace.FetchBlob(grads["w"]), [expected])
