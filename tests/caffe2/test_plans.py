"""Plans and execution steps (core_plan.py, plan_executor.py), checked against what real Caffe2's
plan executor does with the same plans (recorded by running them in Caffe2 1.4)."""
import time

import numpy as np
import pytest

from food101.caffe2 import core, workspace
from food101.caffe2.proto import caffe2_pb2


@pytest.fixture(autouse=True)
def counters():
    workspace.ResetWorkspace()
    workspace.FeedBlob("acc", np.zeros(1, np.float32))
    workspace.FeedBlob("one", np.ones(1, np.float32))
    workspace.FeedBlob("three", np.full(1, 3.0, np.float32))
    workspace.FeedBlob("stop", np.zeros(1, bool))
    yield
    workspace.ResetWorkspace()


def _inc(name="inc"):
    net = core.Net(name)
    net.Add(["acc", "one"], "acc")
    return net


def _acc():
    return float(workspace.FetchBlob("acc")[0])


def test_a_step_without_num_iter_runs_once_and_the_plan_carries_its_nets():
    net = _inc()
    plan = core.Plan("p")
    plan.AddStep(core.ExecutionStep("s", net))
    assert [n.name for n in plan.Proto().network] == [net.Name()]
    assert workspace.RunPlan(plan.Proto().SerializeToString()) is True
    assert _acc() == 1.0
    assert workspace.RunPlan(core.execution_step("again", net, num_iter=4)) is True
    assert _acc() == 5.0


def test_should_stop_blob_is_checked_after_every_net_and_substep():
    net = _inc("stop_net")
    net.GE(["acc", "three"], "stop")
    workspace.RunPlan(core.Plan(core.execution_step(
        "s", net, should_stop_blob=core.BlobReference("stop"))))
    assert _acc() == 3.0
    # substeps x, y (computes stop), z: stops after y once acc reaches 3 (Caffe2: 3)
    workspace.FeedBlob("acc", np.zeros(1, np.float32))
    workspace.FeedBlob("stop", np.zeros(1, bool))
    check = core.Net("check")
    check.GE(["acc", "three"], "stop")
    inc = _inc("inc2")
    step = core.execution_step(
        "outer", [core.execution_step("x", inc), core.execution_step("y", check),
                  core.execution_step("z", inc)], should_stop_blob=core.BlobReference("stop"))
    workspace.RunPlan(step)
    assert _acc() == 3.0


def test_concurrent_substeps_run_every_iteration_and_num_iter_zero_runs_nothing():
    inc = _inc("inc3")
    step = core.execution_step("par", [core.execution_step("c", inc), core.execution_step("d", inc)],
                               concurrent_substeps=True, num_iter=2)
    workspace.RunPlan(step)
    assert _acc() == 4.0  # Caffe2: 4
    workspace.RunPlan(core.execution_step("none", inc, num_iter=0))
    assert _acc() == 4.0


def test_create_workspace_shares_existing_blobs_and_keeps_new_ones_inside():
    net = _inc("cw")
    net.ConstantFill([], "newblob", shape=[1], value=5.0)
    workspace.RunPlan(core.execution_step("s", net, create_workspace=True))
    assert _acc() == 1.0 and not workspace.HasBlob("newblob")


def test_background_plan_and_errors():
    handle = workspace.RunPlanInBackground(core.Plan(core.execution_step("bg", _inc("bg"))))
    while not handle.is_done():
        time.sleep(0.001)
    assert handle.is_succeeded() and _acc() == 1.0
    bad = core.Net("bad")
    bad.Relu(["nonexist"], "y")
    with pytest.raises(RuntimeError, match="nonexist"):
        workspace.RunPlan(core.execution_step("b", bad))
    handle = workspace.RunPlanInBackground(core.execution_step("b2", bad))
    with pytest.raises(RuntimeError):
        handle.is_succeeded()


def test_plan_round_trips_through_its_proto_and_c_workspace_runs_it():
    inc = _inc("rt")
    plan = core.Plan(core.execution_step("outer", [core.execution_step("a", inc, num_iter=2)]))
    again = core.Plan.create_from_proto(plan.Proto())
    assert [s.Name() for s in again.Steps()] == [s.Name() for s in plan.Steps()]
    assert len(again.Proto().network) == 1 and again.Proto().execution_step[0].substep[0].num_iter == 2
    ws = workspace.C.Workspace()
    ws.create_blob("acc").feed(np.zeros(1, np.float32))
    ws.create_blob("one").feed(np.ones(1, np.float32))
    ws.run(plan)
    assert ws.blobs["acc"].fetch()[0] == 2.0 and inc.Name() in ws.nets


def test_execution_step_rules():
    with pytest.raises(AssertionError):
        core.execution_step("x", _inc("r1"), num_iter=2, should_stop_blob=core.BlobReference("s"))
    step = core.ExecutionStep("used", _inc("r2"))
    core.Plan(step)
    with pytest.raises(AssertionError):
        step.SetIter(3)  # a step added to a plan is frozen
    assert isinstance(core.to_execution_step(_inc("r3")), core.ExecutionStep)
    assert isinstance(core.Plan("p").Proto(), caffe2_pb2.PlanDef)
