"""workspace.GetOperatorCost, ApplyTransform(IfFaster), immediate mode, RootFolder, Blob serde,
Net.ClonePartial and op creation sites; expected values recorded from Caffe2 1.4."""
import os

import numpy as np
import pytest

from food101.caffe2 import core, workspace


@pytest.fixture(autouse=True)
def fresh():
    workspace.ResetWorkspace()
    yield
    workspace.StopImmediate()
    workspace.ResetWorkspace()


@pytest.mark.parametrize("x, w, kwargs, expected", [
    ((1, 8, 8, 8), (1, 1, 3, 3), dict(pad=1), (1152, 256)),
    ((2, 3, 10, 10), (4, 3, 3, 3), dict(pad=1), (43200, 3200)),
    ((1, 8, 8, 8), (2, 8, 3, 3), {}, (10368, 288)),
])
def test_conv_cost_matches_caffe2(x, w, kwargs, expected):
    workspace.FeedBlob("X", np.zeros(x, np.float32))
    workspace.FeedBlob("W", np.zeros(w, np.float32))
    op = core.CreateOperator("Conv2D", ["X", "W"], ["Y"], kernel=3, **kwargs)
    assert workspace.GetOperatorCost(op.SerializeToString(), ["X", "W"]) == expected


def test_fc_and_elementwise_costs_and_ops_without_a_cost_function():
    workspace.FeedBlob("X", np.zeros((4, 6), np.float32))
    workspace.FeedBlob("W", np.zeros((5, 6), np.float32))
    workspace.FeedBlob("b", np.zeros(5, np.float32))
    assert workspace.GetOperatorCost(core.CreateOperator("FC", ["X", "W", "b"], ["Y"]),
                                     ["X", "W", "b"]) == (260, 80)
    assert workspace.GetOperatorCost(core.CreateOperator("Add", ["X", "X"], ["Y"]),
                                     ["X", "X"]) == (24, 96)
    assert workspace.GetOperatorCost(core.CreateOperator("Relu", ["X"], ["Y"]), ["X"]) == (0, 96)
    with pytest.raises(RuntimeError, match="Cost inference function not defined"):
        workspace.GetOperatorCost(core.CreateOperator("Softmax", ["X"], ["Y"]), ["X"])


def test_conv_to_nnpack_and_unknown_transforms():
    net = core.Net("tr")
    net.Conv(["x", "w", "b"], "y", kernel=3)
    net.Relu("y", "z")
    out = workspace.ApplyTransform("ConvToNNPack", net.Proto())
    assert [op.engine for op in out.op] == ["NNPACK", ""]
    assert net.Proto().op[0].engine == ""
    with pytest.raises(RuntimeError, match="ConvToNNPack"):
        workspace.ApplyTransform("definitely_not_a_real_transform", net.Proto())


def test_immediate_mode_runs_ops_in_their_own_workspace():
    workspace.StartImmediate(i_know=True)
    root = workspace._immediate_root_folder
    assert workspace.IsImmediate() and os.path.isdir(root)
    net = core.Net("imm")
    net.ConstantFill([], "b", shape=[2], value=1.0)
    assert workspace.ImmediateBlobs() == ["b"] and not workspace.HasBlob("b")
    workspace.FeedImmediate("b", np.full(2, 2.0, np.float32))
    np.testing.assert_array_equal(workspace.FetchImmediate("b"), [2.0, 2.0])
    workspace.StopImmediate()
    assert not workspace.IsImmediate() and not os.path.exists(root)
    with pytest.raises(RuntimeError):
        workspace.FetchImmediate("b")


def test_root_folder_follows_reset_workspace(tmp_path):
    assert workspace.RootFolder() == "."
    workspace.ResetWorkspace(str(tmp_path / "root"))
    assert workspace.RootFolder() == str(tmp_path / "root") and (tmp_path / "root").is_dir()
    workspace.ResetWorkspace(".")


def test_blob_serialize_round_trip():
    ws = workspace.C.Workspace()
    for value in (np.arange(6, dtype=np.int64).reshape(2, 3), b"bytes\0here"):
        blob = ws.create_blob("a")
        blob.feed(value)
        copy = ws.create_blob("a_serde")
        copy.deserialize(blob.serialize("a"))
        np.testing.assert_equal(copy.fetch(), value)


def test_clone_partial_keeps_the_ops_between_inputs_and_outputs():
    n = core.Net("original_cp")
    a1, a2 = n.AddExternalInput("a1", "a2")
    b1, b2 = n.Concat([a1, a2], ["b1", "b2"], axis=0)
    c1 = n.Sum([b1, "p1"], ["c1"])
    c2 = n.Sum([b2], ["c2"])
    d = n.Sum([c1, c2], ["d"])
    n2, (d2,) = n.ClonePartial("f1", {a1: "a11", a2: "a22"}, [d])
    assert len(n2.Proto().op) == 4 and str(d2) == "f1/d" and d2.Net() is n2
    assert set(n2.Proto().external_input) == {"a11", "a22", "p1"}
    n3, (c3,) = n.ClonePartial("f3", [b1], [c1])
    assert len(n3.Proto().op) == 1 and set(n3.Proto().external_input) == {"b1", "p1"}
    with pytest.raises(AssertionError):
        n.ClonePartial("f4", [a1, a2, c2], [d])


def test_ops_remember_where_they_were_created():
    net = core.Net("site")
    net.Relu("x", "y"); line = __import__("inspect").currentframe().f_lineno  # noqa: E702
    net.PopulateProtoWithFileName()
    assert net.Proto().op[0].name == "%s:%d:%s" % (
        __file__, line, "test_ops_remember_where_they_were_created")
