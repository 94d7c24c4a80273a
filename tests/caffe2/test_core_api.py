"""core: building NetDefs the way caffe2.python.core does (names, arguments, scopes, nets)."""
import numpy as np
import pytest

from food101.caffe2 import core, scope, workspace
from food101.caffe2.proto import caffe2_pb2


def arg(op, name):
    found = [a for a in op.arg if a.name == name]
    assert len(found) == 1, "argument %r: %d found" % (name, len(found))
    return found[0]


# -- Net and op creation ------------------------------------------------------------------------
def test_op_creation_returns_blob_references_and_fills_the_operator_def():
    net = core.Net("build")
    y = net.Relu(["x"], "y")
    assert isinstance(y, core.BlobReference) and y == "y" and y.Net() is net
    op = net.Proto().op[0]
    assert (op.type, list(op.input), list(op.output), op.name) == ("Relu", ["x"], ["y"], "")
    assert op.HasField("name")  # Caffe2 always sets name, even to ""
    assert not op.HasField("device_option") and not op.HasField("engine")
    assert list(net.Proto().external_input) == ["x"]  # undefined inputs become external


def test_multiple_outputs_give_a_tuple_and_an_int_gives_auto_named_outputs():
    net = core.Net("auto")
    a, b = net.Split("x", ["a", "b"], axis=1)
    assert (str(a), str(b)) == ("a", "b")
    first, second = net.Split("x", 2)
    name = net.Name()
    assert (str(first), str(second)) == (name + "/Split:0", name + "/Split:1")
    again = net.Split("x", 2)
    assert [str(o) for o in again] == [name + "/Split_2:0", name + "/Split_2:1"]
    single = net.Relu("x")
    assert str(single) == name + "/Relu"
    assert str(net.Relu("x")) == name + "/Relu_2"
    assert net.NextName() == name + "_blob_0" and net.NextName() == name + "_blob_1"


def test_arguments_are_typed_like_caffe2_make_argument():
    net = core.Net("args")
    inner = caffe2_pb2.NetDef(name="inner")
    net.ConstantFill([], "y", i=3, f=0.5, s="NCHW", b=True, ints=[1, 2], floats=[0.5, 1.5],
                     strings=["a", b"b"], n=inner, npf=np.float32(2.5), npi=np.int64(7),
                     arr=np.array([1.0, 2.0], np.float32), skipped=None)
    op = net.Proto().op[0]
    assert arg(op, "i").i == 3 and arg(op, "f").f == 0.5 and arg(op, "s").s == b"NCHW"
    assert arg(op, "b").i == 1 and not arg(op, "b").HasField("f")
    assert list(arg(op, "ints").ints) == [1, 2] and list(arg(op, "floats").floats) == [0.5, 1.5]
    assert list(arg(op, "strings").strings) == [b"a", b"b"]
    assert arg(op, "n").n.name == "inner"
    assert arg(op, "npf").f == 2.5 and arg(op, "npi").i == 7
    assert list(arg(op, "arr").floats) == [1.0, 2.0]
    assert "skipped" not in [a.name for a in op.arg]
    assert [a.name for a in op.arg][:3] == ["i", "f", "s"]  # keyword order is kept


def test_engine_device_option_name_and_random_seed_go_to_their_fields():
    net = core.Net("fields")
    gpu = core.DeviceOption(caffe2_pb2.CUDA, 1)
    net.Conv(["x", "w"], "y", kernel=3, engine="CUDNN", device_option=gpu, name="conv",
             random_seed=5)
    op = net.Proto().op[0]
    assert op.engine == "CUDNN" and op.name == "conv"
    assert (op.device_option.device_type, op.device_option.device_id) == (caffe2_pb2.CUDA, 1)
    assert op.device_option.random_seed == 5
    assert [a.name for a in op.arg] == ["kernel"]


def test_unknown_op_type_fails_at_build_time_naming_net_and_closest_types():
    net = core.Net("typo_net")
    with pytest.raises(AttributeError) as info:
        net.Rleu("x", "y")
    message = str(info.value)
    assert "Rleu" in message and "typo_net" in message and "Relu" in message
    assert not hasattr(net, "NotAnOperatorAtAll")
    assert core.IsOperator("Conv") and not core.IsOperator("Rleu")


def test_net_names_are_unique_like_caffe2():
    first, second = core.Net("same_name_net"), core.Net("same_name_net")
    assert first.Name() == "same_name_net" and second.Name() == "same_name_net_1"
    assert str(first) == first.Name()


def test_blob_reference_behaves_like_its_name():
    ref = core.BlobReference("scope/a/x")
    assert ref == "scope/a/x" and "scope/a/x" == ref and ref != "y"
    assert {ref: 1}["scope/a/x"] == 1 and hash(ref) == hash("scope/a/x")
    assert ref.GetNameScope() == "scope/a/" and ref.GetUnscopedName() == "x"
    assert str(ref + "_grad") == "scope/a/x_grad" and str("_" + ref) == "_scope/a/x"
    assert repr(ref) == 'BlobReference("scope/a/x")'


def test_ops_can_be_created_from_a_blob_of_a_net():
    net = core.Net("chain")
    x = net.AddExternalInput("x")
    y = x.Relu([], "y")
    z = y.Add(["x"], "z")
    assert [list(op.input) for op in net.Proto().op] == [["x"], ["y", "x"]]
    assert str(z) == "z"
    with pytest.raises(AttributeError):
        core.BlobReference("orphan").Relu([], "y")


def test_create_operator_outside_a_net():
    op = core.CreateOperator("Conv", ["X", "W", "b"], ["Y"], kernel=3, pad=1, engine="CUDNN")
    assert op.type == "Conv" and list(op.input) == ["X", "W", "b"] and op.engine == "CUDNN"
    assert [(a.name, a.i) for a in op.arg] == [("kernel", 3), ("pad", 1)]


def test_data_type_is_tensor_proto_enum():
    assert core.DataType.FLOAT == 1 and core.DataType.INT32 == 2 and core.DataType.INT64 == 10
    assert core.DataType.BYTE == 3 and core.DataType.FLOAT16 == 12


# -- scopes -------------------------------------------------------------------------------------
def test_name_scope_prefixes_blob_names_and_nests():
    net = core.Net("scoped")
    with core.NameScope("fire2"):
        assert scope.CurrentNameScope() == "fire2/"
        net.Relu("x", "y")
        with core.NameScope("inner"):
            assert str(core.ScopedBlobReference("z")) == "fire2/inner/z"
        with core.NameScope("reset", reset=True):
            assert scope.CurrentNameScope() == "reset/"
        net.Relu(core.BlobReference("unscoped"), "w")  # BlobReferences are taken as they are
    assert scope.CurrentNameScope() == ""
    ops = net.Proto().op
    assert list(ops[0].input) == ["fire2/x"] and list(ops[0].output) == ["fire2/y"]
    assert list(ops[1].input) == ["unscoped"] and list(ops[1].output) == ["fire2/w"]


def test_device_scope_sets_the_op_device_and_nests():
    net = core.Net("devices")
    gpu = core.DeviceOption(caffe2_pb2.CUDA, 0, node_name="node1")
    with core.DeviceScope(gpu):
        net.Relu("x", "y")
        with core.DeviceScope(core.DeviceOption(caffe2_pb2.CPU)):
            net.Relu("y", "z")
            assert scope.CurrentDeviceScope().node_name == "node1"  # inherited
        net.Relu("z", "w", device_option=core.DeviceOption(caffe2_pb2.CPU))  # explicit wins
    assert scope.CurrentDeviceScope() is None
    net.Relu("w", "v")
    ops = net.Proto().op
    assert ops[0].device_option.device_type == caffe2_pb2.CUDA
    assert ops[1].device_option.device_type == caffe2_pb2.CPU
    assert ops[2].device_option.device_type == caffe2_pb2.CPU
    assert not ops[3].HasField("device_option")


def test_device_option_builder():
    opt = core.DeviceOption(caffe2_pb2.CUDA, 2, random_seed=3, node_name="n")
    assert isinstance(opt, caffe2_pb2.DeviceOption)
    assert (opt.device_type, opt.device_id, opt.random_seed, opt.node_name) == (1, 2, 3, "n")
    cpu = core.DeviceOption(caffe2_pb2.CPU)
    assert cpu.HasField("device_type") and cpu.HasField("device_id")


# -- external inputs/outputs, proto, clone, append ----------------------------------------------
def test_external_inputs_outputs_and_blob_is_defined():
    net = core.Net("io")
    a, b = net.AddExternalInput("a", "b")
    assert (str(a), str(b)) == ("a", "b") and net.BlobIsDefined("a")
    with pytest.raises(ValueError):
        net.AddExternalInput("a")
    y = net.Add([a, b], "y")
    assert net.BlobIsDefined(y) and not net.BlobIsDefined("nope")
    net.AddExternalOutput(y)
    assert list(net.Proto().external_output) == ["y"]
    with pytest.raises(ValueError):
        net.AddExternalOutput("nope")
    net.Proto().op.extend([core.CreateOperator("Relu", ["y"], ["r"])])  # direct proto edits count
    assert net.BlobIsDefined("r")
    assert [str(x) for x in net.external_inputs] == ["a", "b"]


def test_net_from_a_netdef_copies_it_and_continues_auto_names():
    proto = caffe2_pb2.NetDef(name="loaded")
    proto.op.extend([core.CreateOperator("Relu", ["x"], ["loaded_blob_4"])])
    proto.external_input.append("x")
    net = core.Net(proto)
    assert net.Proto() is not proto and net.Proto().op[0] == proto.op[0]
    assert net.BlobIsDefined("x") and net.BlobIsDefined("loaded_blob_4")
    assert net.NextName() == net.Name() + "_blob_5"
    shared = core.Net(proto, inplace=True)
    assert shared.Proto() is proto


def test_clone_renames_blobs_and_masks_ops():
    net = core.Net("orig")
    net.Relu("x", "y")
    net.Sigmoid("y", "z")
    net.AddExternalOutput("z")
    clone = net.Clone("copy", blob_remap={"x": "input"}, op_id_mask=[0])
    assert clone.Name() == "copy" and len(clone.Proto().op) == 1
    assert list(clone.Proto().op[0].input) == ["input"]
    assert list(clone.Proto().external_input) == ["input"]
    assert len(net.Proto().op) == 2  # the original is untouched
    updated = net.Clone("copy2", update_external_list=True)
    assert list(updated.Proto().external_input) == ["x"]
    assert list(updated.Proto().external_output) == ["z"]


def test_append_net_merges_ops_and_external_lists():
    first = core.Net("first")
    first.Relu("x", "y")
    second = core.Net("second")
    second.Sigmoid("y", "z")
    second.AddExternalOutput("z")
    first.AppendNet(second)
    assert [op.type for op in first.Proto().op] == ["Relu", "Sigmoid"]
    assert list(first.Proto().external_input) == ["x"]  # y is made by first
    assert list(first.Proto().external_output) == ["z"]
    gpu = core.DeviceOption(caffe2_pb2.CUDA, 0)
    third = core.Net("third")
    third.AppendNet(second, device_option=gpu)
    assert third.Proto().op[0].device_option.device_type == caffe2_pb2.CUDA
    assert not second.Proto().op[0].HasField("device_option")


# -- gradients ----------------------------------------------------------------------------------
def test_add_gradient_operators_returns_blob_reference_map_and_computes_gradients():
    net = core.Net("grad")
    net.AddExternalInput("x", "w", "b", "label")
    net.FC(["x", "w", "b"], "y")
    net.Softmax("y", "p")
    net.LabelCrossEntropy(["p", "label"], "xent")
    loss = net.AveragedLoss("xent", "loss")
    grads = net.AddGradientOperators([loss])
    assert all(isinstance(k, core.BlobReference) and isinstance(v, core.BlobReference)
               for k, v in grads.items())
    assert grads["w"] == "w_grad" and grads["b"] == "b_grad"
    assert grads["loss"] == "loss_autogen_grad"
    assert net.BlobIsDefined("w_grad")
    rs = np.random.RandomState(0)
    x, w = rs.randn(4, 3).astype(np.float32), rs.randn(5, 3).astype(np.float32)
    b, label = np.zeros(5, np.float32), np.array([0, 1, 4, 2], np.int32)
    for name, value in dict(x=x, w=w, b=b, label=label).items():
        workspace.FeedBlob(name, value)
    workspace.RunNetOnce(net)
    logits = x @ w.T + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dlogits = p.copy()
    dlogits[np.arange(4), label] -= 1
    dlogits /= 4
    np.testing.assert_allclose(workspace.FetchBlob("w_grad"), dlogits.T @ x, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(workspace.FetchBlob("b_grad"), dlogits.sum(0), rtol=1e-4, atol=1e-6)


def test_gradient_dict_with_fed_and_default_seeds():
    net = core.Net("grad_dict")
    net.AddExternalInput("x")
    net.Scale("x", "y", scale=3.0)
    net.Scale("x", "z", scale=2.0)
    grads = net.AddGradientOperators({"y": "y_seed", "z": None})
    assert grads["x"] == "x_grad" and grads["z"] == "z_autogen_grad"
    workspace.FeedBlob("x", np.ones(2, np.float32))
    workspace.FeedBlob("y_seed", np.array([1.0, -1.0], np.float32))
    workspace.RunNetOnce(net)
    np.testing.assert_allclose(workspace.FetchBlob("x_grad"), [3.0 + 2.0, -3.0 + 2.0])


def build_skip_net():
    net = core.Net("grad_skip")
    net.AddExternalInput("x")
    net.Scale("x", "x2", scale=2.0)
    net.Scale("x2", "y", scale=3.0)
    loss = net.AveragedLoss("y", "loss")
    return net, net.AddGradientOperators([loss], skip=1)


def test_gradient_skip_leaves_the_first_ops_out():
    _, grads = build_skip_net()
    assert grads["x2"] == "x2_grad" and "x" not in grads


def test_gradient_skip_still_computes_the_gradient_of_the_boundary_blob():
    net, _ = build_skip_net()
    workspace.FeedBlob("x", np.ones(4, np.float32))
    workspace.RunNetOnce(net)
    np.testing.assert_allclose(workspace.FetchBlob("x2_grad"), np.full(4, 0.75, np.float32))


def test_workspace_accepts_core_nets():
    net = core.Net("runs")
    net.ConstantFill([], "c", shape=[2], value=4.0)
    workspace.RunNetOnce(net)
    np.testing.assert_array_equal(workspace.FetchBlob("c"), [4.0, 4.0])
    workspace.CreateNet(net)
    workspace.RunNet(net.Proto().name)
    assert workspace.HasBlob("c")


def test_const_next_blob_and_run_all_on_gpu():
    net = core.Net("misc")
    c = net.Const(np.array([[1.0, 2.0]], np.float32), "c")
    op = net.Proto().op[0]
    assert str(c) == "c" and op.type == "GivenTensorFill"
    assert list(arg(op, "shape").ints) == [1, 2] and list(arg(op, "values").floats) == [1.0, 2.0]
    assert net.Proto().op[-1].type == "GivenTensorFill"
    assert str(net.NextBlob("c")) == "c_auto_0" and str(net.NextBlob("c")) == "c_auto_1"
    with core.NameScope("s"):
        assert str(net.NextScopedBlob("t")) == "s/t"
    net.RunAllOnGPU(gpu_id=1, use_cudnn=True)
    assert net.Proto().device_option.device_id == 1 and op.engine == "CUDNN"
    with pytest.raises(ValueError, match="mixing"):
        core.MakeArgument("bad", [1, "a"])


@pytest.mark.parametrize("build", ["adagrad", "adam", "multi_precision_sgd"])
def test_every_optimizer_builder_trains(build):
    """build_adagrad / build_adam / build_multi_precision_sgd produce runnable nets that learn."""
    from food101.caffe2 import brew, model_helper, optimizer
    m = model_helper.ModelHelper(name="opt_" + build)
    fc = brew.fc(m, "x", "fc", 4, 3)
    m.net.SoftmaxWithLoss([fc, "label"], ["p", "loss"])
    m.AddGradientOperators(["loss"])
    if build == "adagrad":
        optimizer.build_adagrad(m, 0.1)
    elif build == "adam":
        optimizer.build_adam(m, 0.01)
    else:
        optimizer.build_multi_precision_sgd(m, 0.1, momentum=0.9)
    workspace.RunNetOnce(m.param_init_net)
    workspace.FeedBlob("x", np.random.RandomState(0).randn(5, 4).astype(np.float32))
    workspace.FeedBlob("label", (np.arange(5) % 3).astype(np.int32))
    workspace.CreateNet(m.net)
    losses = []
    for _ in range(20):
        workspace.RunNet(m.net.Proto().name)
        losses.append(float(workspace.FetchBlob("loss")))
    assert losses[-1] < 0.8 * losses[0]
