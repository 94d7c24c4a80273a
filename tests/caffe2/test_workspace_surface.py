"""Caffe2's workspace/core surface scripts touch: workspace.blobs, workspace.C, Predictor,
InferShapesAndTypes, engine preferences, GlobalInit, device helpers."""
import numpy as np
import pytest

from food101.caffe2 import core, workspace
from food101.caffe2.errors import Caffe2Error
from food101.caffe2.proto import caffe2_pb2


@pytest.fixture(autouse=True)
def fresh_workspace():
    workspace.ResetWorkspace()
    yield
    workspace.ResetWorkspace()


def test_blobs_is_a_dict_of_the_current_workspace():
    workspace.blobs["x"] = np.arange(3, dtype=np.float32)
    assert "x" in workspace.blobs and list(workspace.blobs) == ["x"] and len(workspace.blobs) == 1
    np.testing.assert_array_equal(workspace.blobs["x"], [0, 1, 2])
    np.testing.assert_array_equal(workspace.blobs.fetch("x"), [0, 1, 2])
    del workspace.blobs["x"]
    assert "x" not in workspace.blobs


def test_c_workspace_is_private_and_current_is_shared():
    ws = workspace.C.Workspace()
    assert ws.blobs == {} and ws.nets == {}
    ws.create_blob("t").feed(np.array([1.5, 2.5]))
    np.testing.assert_array_equal(ws.blobs["t"].fetch(), [1.5, 2.5])
    assert not workspace.HasBlob("t")
    net = core.Net("fill")
    net.ConstantFill([], "c", shape=[2], value=3.0)
    ws.create_net(net).run()
    np.testing.assert_array_equal(ws.blobs["c"].fetch(), [3.0, 3.0])
    with pytest.raises(Caffe2Error, match="already exists"):
        ws.create_net(net)
    workspace.FeedBlob("y", np.ones(1, np.float32))
    assert "y" in workspace.C.Workspace.current.blobs
    view = ws.blobs["t"].tensor()       # Caffe2's in-place TensorCPU view
    view.data[0] = 9.0
    np.testing.assert_array_equal(ws.blobs["t"].fetch(), [9.0, 2.5])
    copy = view.fetch()
    view.data[1] = 0.0
    np.testing.assert_array_equal(copy, [9.0, 2.5])
    view.init([2, 3], caffe2_pb2.TensorProto.INT32)
    view.data[1, 1] = 7
    assert ws.blobs["t"].fetch().dtype == np.int32 and ws.blobs["t"].fetch()[1, 1] == 7
    with pytest.raises(RuntimeError):
        view.init([1], caffe2_pb2.TensorProto.STRING)


def test_predictor_runs_init_once_and_feeds_inputs_in_order():
    init = core.Net("init")
    init.GivenTensorFill([], "w", shape=[2, 3], values=np.arange(6, dtype=np.float32).tolist())
    init.ConstantFill([], "b", shape=[2], value=1.0)
    predict = core.Net("predict")
    predict.AddExternalInput("data", "w", "b")
    predict.FC(["data", "w", "b"], "out")
    predict.AddExternalOutput("out")
    p = workspace.Predictor(init.Proto().SerializeToString(), predict.Proto())
    x = np.ones((1, 3), dtype=np.float32)
    np.testing.assert_allclose(p.run([x])[0], x @ np.arange(6).reshape(2, 3).T + 1)
    # real Caffe2 (checked in the py3.7 env): array i feeds external_input[i], init-filled or not
    np.testing.assert_allclose(p.run([x, np.ones((2, 3), np.float32)])[0], [[4.0, 4.0]])
    with pytest.raises(Caffe2Error, match="has 3 external input"):
        p.run([x, x, x, x])


def test_infer_shapes_and_types_leaves_the_workspace_alone():
    net = core.Net("shapes")
    net.Relu("x", "y")
    net.Cast("y", "z", to=core.DataType.INT32)
    workspace.FeedBlob("x", np.zeros((2, 5), dtype=np.float32))
    shapes, types = workspace.InferShapesAndTypes([net])
    assert shapes["y"] == [2, 5] and types["z"] == caffe2_pb2.TensorProto.INT32
    assert not workspace.HasBlob("y")


def test_engine_prefs_global_init_and_device_helpers():
    core.SetEnginePref({"Conv": ["CUDNN"]}, {caffe2_pb2.CUDA: ["CUDNN"]})
    assert core.GetEnginePref()["per_op"] == {"Conv": ["CUDNN"]}
    core.SetOpEnginePref("Relu", {caffe2_pb2.CPU: ["DEFAULT"]})
    assert "Relu" in core.GetEnginePref()["per_op"]
    assert core.IsOperatorWithEngine("Relu", "DEFAULT")
    assert not core.IsOperatorWithEngine("Relu", "NOEXIST")
    assert workspace.GlobalInit(["caffe2", "--caffe2_log_level=0"])
    assert core.GetGlobalInitArgs()[1] == "--caffe2_log_level=0"
    assert workspace.has_hip_support is False
    assert workspace.NumGpuDevices() == workspace.NumCudaDevices()
    cpu5 = core.DeviceOption(caffe2_pb2.CPU, 5)
    assert core.device_option_equal(cpu5, caffe2_pb2.DeviceOption())
    with core.DeviceScope(0, node_name="node:1"):
        assert core.CurrentDeviceScope().node_name == "node:1"
    assert "Relu" in core._REGISTERED_OPERATORS
    assert workspace.C.OpSchema.get("Relu") is not None and workspace.C.OpSchema.get("Nope") is None


def test_core_c_is_the_workspace_c_namespace(tmp_path):
    # Caffe2 tutorials write DBs through core.C.create_db (create_your_own_dataset)
    from food101.caffe2 import core, workspace
    assert core.C is workspace.C
    db = core.C.create_db("minidb", str(tmp_path / "x.minidb"), core.C.Mode.write)
    txn = db.new_transaction()
    txn.put("k", b"v")
    txn.commit()
    del txn
    db.close()
    assert (tmp_path / "x.minidb").exists()
