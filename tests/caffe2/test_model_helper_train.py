"""Whole training runs built with model_helper + brew + optimizer reproduce real Caffe2;
then the ModelHelper, brew and optimizer details those runs rely on.

The fixtures' train/*.json and *.npz were produced by real Caffe2 running the code in
caffe2_reference/tools/gen_fixtures.py (seed0_style_training, transfer_training,
bn_freeze_case); each test below re-creates one run with this project's API.
"""
import json
import os

import numpy as np
import pytest

from food101.caffe2 import brew, core, model_helper, optimizer, workspace
from food101.caffe2.modeling import initializers
from food101.caffe2.modeling.parameter_info import ParameterTags
from food101.caffe2.proto import caffe2_pb2
from tests.support import REFERENCE

REF = REFERENCE


def ref(*parts):
    return os.path.join(REF, *parts)


def load_json(name):
    with open(ref("train", name)) as fh:
        return json.load(fh)


def load_net(*parts):
    net = caffe2_pb2.NetDef()
    with open(ref(*parts), "rb") as fh:
        net.ParseFromString(fh.read())
    return net


def forward_and_update_ops(netdef):
    """The ops that are not gradient computation (where this project differs by design)."""
    return [op for op in netdef.op
            if not op.is_gradient_op and not op.type.endswith("Gradient")
            and not (op.type == "ConstantFill" and op.output[0].endswith("_autogen_grad"))]


def assert_same_ops(ours, expected):
    a, b = forward_and_update_ops(ours), forward_and_update_ops(expected)
    assert len(a) == len(b)
    for index, (x, y) in enumerate(zip(a, b)):
        assert x == y, "op #%d differs:\n%s\nexpected (real Caffe2):\n%s" % (index, x, y)
    assert list(ours.external_input) == list(expected.external_input)


def close(actual, expected, tol, what):
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol, err_msg=what)


@pytest.fixture(autouse=True)
def fresh_optimizer_numbering():
    optimizer.reset_optimizer_instance_count()  # so blob names are SgdOptimizer_0_...
    yield
    optimizer.reset_optimizer_instance_count()


# -- seed0: the classic hand-written Caffe2 loop ------------------------------------------------
def build_seed0():
    m = model_helper.ModelHelper(name="seed0_train", arg_scope={"order": "NCHW"})
    m.net.AddExternalInput("data_uint8", "label")
    m.net.Cast(["data_uint8"], "data_f", to=core.DataType.FLOAT)
    m.net.Scale("data_f", "data_s", scale=float(1. / 256))
    m.net.StopGradient("data_s", "data")
    brew.conv(m, "data", "conv1", 1, 8, kernel=5)
    brew.max_pool(m, "conv1", "pool1", kernel=2, stride=2)
    brew.relu(m, "pool1", "relu1")
    brew.fc(m, "relu1", "fc1", 8 * 12 * 12, 10)
    brew.softmax(m, "fc1", "softmax")
    xent = m.net.LabelCrossEntropy(["softmax", "label"], "xent")
    loss = m.net.AveragedLoss(xent, "loss")
    brew.accuracy(m, ["softmax", "label"], "accuracy")
    m.AddGradientOperators([loss])
    iteration = brew.iter(m, "iter")
    lr = m.net.LearningRate(iteration, "LR", base_lr=-0.1, policy="step", stepsize=1, gamma=0.999)
    one = m.param_init_net.ConstantFill([], "ONE", shape=[1], value=1.0)
    for p in m.params:
        m.net.WeightedSum([p, one, m.param_to_grad[p], lr], p)
    return m


def test_seed0_nets_are_the_ones_real_caffe2_built():
    m = build_seed0()
    assert_same_ops(m.net.Proto(), load_net("train", "seed0_train_net.pb"))
    assert_same_ops(m.param_init_net.Proto(), load_net("train", "seed0_init_net.pb"))
    assert [str(p) for p in m.params] == load_json("seed0_train.json")["params"]
    assert {str(p): str(g) for p, g in m.param_to_grad.items()} == {
        p: p + "_grad" for p in ["conv1_w", "conv1_b", "fc1_w", "fc1_b"]}


def test_seed0_training_matches_caffe2_iteration_by_iteration():
    expected = load_json("seed0_train.json")
    data = np.load(ref("train", "seed0_train.npz"))
    tol = expected["tol"]
    m = build_seed0()
    workspace.RunNetOnce(m.param_init_net)
    for p in m.params:  # the fixture replaced the random fills after they ran
        assert workspace.FetchBlob(p).shape == data["init:" + str(p)].shape
        workspace.FeedBlob(str(p), data["init:" + str(p)])
    workspace.FeedBlob("data_uint8", data["batch0:data_uint8"])
    workspace.FeedBlob("label", data["batch0:label"])
    workspace.CreateNet(m.net)
    losses, accuracies, lrs = [], [], []
    for it in range(expected["iterations"]):
        workspace.FeedBlob("data_uint8", data["batch%d:data_uint8" % (it % 3)])
        workspace.FeedBlob("label", data["batch%d:label" % (it % 3)])
        workspace.RunNet(m.net.Proto().name)
        losses.append(float(workspace.FetchBlob("loss")))
        accuracies.append(float(workspace.FetchBlob("accuracy")))
        lrs.append(float(np.ravel(workspace.FetchBlob("LR"))[0]))
        if it == 0:
            for p in m.params:
                close(workspace.FetchBlob(m.param_to_grad[p]), data["grad0:" + str(p)], tol,
                      "gradient of %s after iteration 1" % p)
    close(losses, expected["loss"], tol, "loss per iteration")
    close(accuracies, expected["accuracy"], tol, "accuracy per iteration")
    close(lrs, expected["lr"], tol, "lr per iteration")
    for p in m.params:
        close(workspace.FetchBlob(p), data["final:" + str(p)], tol, "%s after training" % p)


@pytest.mark.cuda
def test_seed0_built_under_a_cuda_device_scope_trains_like_caffe2():
    """The classic GPU recipe: build everything inside DeviceScope(CUDA), feed with it."""
    expected = load_json("seed0_train.json")
    data = np.load(ref("train", "seed0_train.npz"))
    gpu = core.DeviceOption(caffe2_pb2.CUDA, 0)
    with core.DeviceScope(gpu):
        m = build_seed0()
    assert all(op.device_option.device_type == caffe2_pb2.CUDA
               for op in m.param_init_net.Proto().op if op.output[0] != "iter")
    workspace.RunNetOnce(m.param_init_net)
    for p in m.params:
        workspace.FeedBlob(str(p), data["init:" + str(p)], device_option=gpu)
    workspace.CreateNet(m.net)
    losses = []
    for it in range(expected["iterations"]):
        workspace.FeedBlob("data_uint8", data["batch%d:data_uint8" % (it % 3)], device_option=gpu)
        workspace.FeedBlob("label", data["batch%d:label" % (it % 3)], device_option=gpu)
        workspace.RunNet(m.net.Proto().name)
        losses.append(float(workspace.FetchBlob("loss")))
    close(losses, expected["loss"], 1e-3, "loss per iteration on CUDA")
    for p in m.params:
        close(workspace.FetchBlob(p), data["final:" + str(p)], 1e-3, "%s after training" % p)


# -- transfer: the zoo SqueezeNet with a new 101-way conv10, build_sgd + weight decay ----------
def build_transfer(zoo_pred, zoo_weights, num_classes=101):
    m = model_helper.ModelHelper(name="food101_train", arg_scope={"order": "NCHW"})
    m.net.AddExternalInput("data_uint8", "label", "mean")
    m.net.Cast(["data_uint8"], "data_f", to=core.DataType.FLOAT)
    m.net.Sub(["data_f", "mean"], "data_c", broadcast=1, axis=1)
    m.net.StopGradient("data_c", "data")
    for op in zoo_pred.op:
        if op.output[0] in ("conv10", "pool10", "softmaxout"):
            break
        m.net.Proto().op.extend([op])
    m.net.AddExternalInput(*[k for k in zoo_weights if not k.startswith("conv10")])
    m.net.StopGradient("fire9/concat", "fire9/concat_frozen")
    brew.conv(m, "fire9/concat_frozen", "conv10", 512, num_classes, kernel=1)
    brew.relu(m, "conv10", "conv10")
    brew.average_pool(m, "conv10", "pool10", global_pooling=True)
    brew.softmax(m, "pool10", "softmaxout")
    xent = m.net.LabelCrossEntropy(["softmaxout", "label"], "xent")
    loss = m.net.AveragedLoss(xent, "loss")
    m.net.Flatten("softmaxout", "softmax_2d")
    brew.accuracy(m, ["softmax_2d", "label"], "accuracy")
    m.AddGradientOperators([loss])
    optimizer.add_weight_decay(m, 5e-4)
    optimizer.build_sgd(m, base_learning_rate=0.01, policy="step", stepsize=4, gamma=0.5,
                        momentum=0.9)
    return m


def zoo_weight_names():
    return [op.output[0] for op in load_net("zoo", "squeezenet", "init_net.pb").op]


def test_transfer_nets_are_the_ones_real_caffe2_built():
    m = build_transfer(load_net("zoo", "squeezenet", "predict_net.pb"), zoo_weight_names())
    assert_same_ops(m.net.Proto(), load_net("train", "transfer_train_net.pb"))
    assert_same_ops(m.param_init_net.Proto(), load_net("train", "transfer_param_init_net.pb"))
    assert [str(p) for p in m.params] == ["conv10_w", "conv10_b"]


def test_transfer_training_matches_caffe2_and_leaves_the_backbone_untouched():
    expected = load_json("transfer_train.json")
    data = np.load(ref("train", "transfer_train.npz"))
    tol = expected["tol"]
    workspace.RunNetOnce(load_net("zoo", "squeezenet", "init_net.pb"))
    frozen = {k: workspace.FetchBlob(k).copy() for k in zoo_weight_names()
              if not k.startswith("conv10")}
    m = build_transfer(load_net("zoo", "squeezenet", "predict_net.pb"), zoo_weight_names())
    workspace.FeedBlob("mean", np.array(expected["mean_bgr"], np.float32))
    workspace.RunNetOnce(m.param_init_net)
    for k in ("conv10_w", "conv10_b"):
        workspace.FeedBlob(k, data["init:" + k])
    workspace.FeedBlob("data_uint8", data["batch0:data_uint8"])
    workspace.FeedBlob("label", data["batch0:label"])
    workspace.CreateNet(m.net)
    losses, accuracies = [], []
    for it in range(expected["iterations"]):
        workspace.FeedBlob("data_uint8", data["batch%d:data_uint8" % (it % 3)])
        workspace.FeedBlob("label", data["batch%d:label" % (it % 3)])
        workspace.RunNet(m.net.Proto().name)
        losses.append(float(workspace.FetchBlob("loss")))
        accuracies.append(float(workspace.FetchBlob("accuracy")))
        for blob, value in expected["lr_blobs"][it].items():
            close(float(np.ravel(workspace.FetchBlob(blob))[0]), value, tol,
                  "%s at iteration %d" % (blob, it))
    close(losses, expected["loss"], tol, "loss per iteration")
    close(accuracies, expected["accuracy"], tol, "accuracy per iteration")
    for k in ("conv10_w", "conv10_b"):
        close(workspace.FetchBlob(k), data["final:" + k], tol, "%s after training" % k)
    assert expected["frozen_unchanged"]
    for k, before in frozen.items():
        assert np.array_equal(workspace.FetchBlob(k), before), "frozen blob %s changed" % k


# -- bn_freeze: a SpatialBN that is not a param still drifts its running mean in training mode --
# The generator drew conv_w and conv_b from its module-level RandomState(1234) after every op
# case's inputs and fed gradients. Replaying that stream (checked against the ops fixtures on
# the way) recovers them exactly. Shapes of the module-level draws, in the generator's order:
_OP_CASE_DRAWS = [
    (2, 3, 9, 9), (4, 3, 3, 3), (4,), (5, 3, 3, 3), (5,), (4, 3, 3, 3), (4,),
    (2, 4, 7, 7), (6, 2, 3, 3), (6,), (4, 3, 3, 3), (4,), (4, 3, 1, 1), (4, 3, 3, 1), (4,),
    (4, 3, 3, 3), (4,), (2, 3, 10, 10), (2, 3, 4, 4), (2, 5), (2, 3, 4, 4), (2, 5, 4, 4),
    (2, 1, 4, 4), (3, 7), (3, 7, 1, 1), (2, 6), (2, 8, 5, 5), (3, 4, 2, 2), (5, 16), (5,),
    (2, 3, 4, 4), (3,), (3,), (3,), (3,), (4, 3, 5, 5), (3,), (3,), (3,), (3,),
    (2, 3), (2, 3), (2, 3), (2, 3, 4, 4), (3,), (2, 3, 4, 4), (3,), (2, 3, 4, 4), (3,),
    (4, 6), (5,), (4, 6), (4, 6), "uint8", (2, 3), (2, 3), (2, 3, 2, 2), (2, 5, 4, 3),
    (2, 3, 4), (3, 4), (4, 5), (5,), (6,), (6,), (6,), (6,), (6,), (6,), (6,), (6,),
]


def bn_freeze_conv_params():
    rs = np.random.RandomState(1234)
    last = None
    for shape in _OP_CASE_DRAWS:
        last = rs.randint(0, 256, (2, 3, 4, 4)) if shape == "uint8" else rs.randn(*shape)
    assert np.array_equal(last.astype(np.float32), np.load(ref("ops", "weighted_sum.npz"))["in:g"])
    with open(ref("ops", "index.json")) as fh:
        cases = json.load(fh)
    for case in cases:  # the gradients fed to each case's outputs
        fed = np.load(ref("ops", case["data"]))
        for y in case["grad_outputs"]:
            shape = fed["gradin:" + y].shape
            drawn = rs.randn(*shape) if shape else np.array(rs.randn())
            assert np.array_equal(drawn.astype(np.float32), fed["gradin:" + y]), case["name"]
    conv_w = (rs.randn(4, 2, 3, 3) * 0.3).astype(np.float32)
    conv_b = rs.randn(4).astype(np.float32)
    return conv_w, conv_b


@pytest.mark.parametrize("is_test", [0, 1])
def test_bn_running_mean_drifts_in_training_mode_even_when_not_a_param(is_test):
    expected = load_json("bn_freeze.json")["is_test=%d" % is_test]
    conv_w, conv_b = bn_freeze_conv_params()
    r = np.random.RandomState(9)
    m = model_helper.ModelHelper(name="bn_%d" % is_test)
    m.net.Conv(["data", "conv_w", "conv_b"], "conv", kernel=3, pad=1)
    m.net.SpatialBN(["conv", "bn_s", "bn_b", "bn_rm", "bn_riv"],
                    ["bn"] + (["bn_rm", "bn_riv", "bn_sm", "bn_siv"] if not is_test else []),
                    is_test=is_test, epsilon=1e-5, momentum=0.9)
    m.net.Relu("bn", "bn")
    brew.fc(m, "bn", "fc", 4 * 6 * 6, 3)
    m.net.SoftmaxWithLoss(["fc", "label"], ["prob", "loss"])
    m.AddGradientOperators(["loss"])
    optimizer.build_sgd(m, base_learning_rate=0.1, policy="fixed")
    assert [str(p) for p in m.params] == expected["params"]
    workspace.RunNetOnce(m.param_init_net)
    init = {"conv_w": conv_w, "conv_b": conv_b, "bn_s": np.ones(4, np.float32),
            "bn_b": np.zeros(4, np.float32), "bn_rm": np.zeros(4, np.float32),
            "bn_riv": np.ones(4, np.float32), "fc_w": (r.randn(3, 144) * 0.1).astype(np.float32),
            "fc_b": np.zeros(3, np.float32)}
    for k, v in init.items():
        workspace.FeedBlob(k, v)
    workspace.FeedBlob("data", (r.randn(5, 2, 6, 6) * 3 + 2).astype(np.float32))
    workspace.FeedBlob("label", r.randint(0, 3, 5).astype(np.int32))
    workspace.CreateNet(m.net)
    history = []
    for _ in range(4):
        workspace.RunNet(m.net.Proto().name)
        history.append(workspace.FetchBlob("bn_rm").tolist())
    close(history, expected["running_mean_history"], 1e-4, "running mean per iteration")
    assert np.array_equal(workspace.FetchBlob("conv_w"), conv_w) == (not expected["conv_w_changed"])
    for k in ("conv_w", "conv_b", "bn_s", "bn_b"):  # not params: never updated
        assert np.array_equal(workspace.FetchBlob(k), init[k]), k
    assert not np.array_equal(workspace.FetchBlob("fc_w"), init["fc_w"])  # the param is trained


# -- ModelHelper, brew and optimizer details ------------------------------------------------------
def test_create_param_uses_the_initializer_tags_and_name_scope():
    m = model_helper.ModelHelper(name="params")
    with core.NameScope("block"):
        w = m.create_param("w", [3, 2], initializers.Initializer("GaussianFill", std=0.5),
                           tags=ParameterTags.WEIGHT)
        b = m.create_param("b", [3], initializers.Initializer("ConstantFill", value=0.1),
                           tags=[ParameterTags.BIAS])
        assert m.create_param("w", [3, 2], initializers.Initializer("XavierFill")) is w
        with pytest.raises(ValueError):
            m.create_param("w", [4, 2], initializers.Initializer("XavierFill"))
    rm = m.create_param("rm", [3], initializers.ExternalInitializer(),
                        tags=ParameterTags.COMPUTED_PARAM)
    assert (str(w), str(b), str(rm)) == ("block/w", "block/b", "rm")
    assert m.params == [w, b] and m.weights == [w] and m.biases == [b]
    assert m.GetComputedParams() == [rm]
    assert m.GetParams("block") == [w, b] and m.GetParams("other") == []
    with core.NameScope("block"):
        assert m.GetParams() == [w, b]
    fills = m.param_init_net.Proto().op
    assert [(op.type, list(op.output)) for op in fills] == [
        ("GaussianFill", ["block/w"]), ("ConstantFill", ["block/b"])]
    assert arg_value(fills[0], "std") == 0.5 and list(arg_value(fills[0], "shape")) == [3, 2]
    assert m.get_param_info(w).shape == [3, 2]


def arg_value(op, name):
    (a,) = [a for a in op.arg if a.name == name]
    return a.f if a.HasField("f") else a.i if a.HasField("i") else a.ints


def test_spatial_bn_params_and_fills_are_caffe2s():
    m = model_helper.ModelHelper(name="bn")
    out = brew.spatial_bn(m, "x", "bn", 4, epsilon=1e-3)
    assert str(out) == "bn"
    assert [str(p) for p in m.params] == ["bn_s", "bn_b"]
    assert [str(p) for p in m.GetComputedParams()] == ["bn_rm", "bn_riv"]
    assert [str(p) for p in m.weights] == ["bn_s"] and [str(p) for p in m.biases] == ["bn_b"]
    values = {op.output[0]: arg_value(op, "value") for op in m.param_init_net.Proto().op}
    assert values == {"bn_s": 1.0, "bn_b": 0.0, "bn_rm": 0.0, "bn_riv": 1.0}
    op = m.net.Proto().op[0]
    assert list(op.output) == ["bn", "bn_rm", "bn_riv", "bn_sm", "bn_siv"]
    brew.spatial_bn(m, "x2", "bn2", 4, is_test=1)
    assert list(m.net.Proto().op[1].output) == ["bn2"]


def test_validate_rejects_duplicate_params():
    m = model_helper.ModelHelper(name="dupes")
    brew.fc(m, "x", "fc", 3, 2)
    m.AddParameter(m.params[0])
    with pytest.raises(ValueError, match="fc_w"):
        m.Validate()


def test_brew_arg_scope_model_arg_scope_and_registration():
    m = model_helper.ModelHelper(name="scopes", arg_scope={"order": "NHWC", "use_cudnn": False})
    with brew.arg_scope([brew.conv], WeightInitializer=initializers.Initializer, weight_init=(
            "MSRAFill", {})):
        brew.conv(m, "x", "c1", 3, 8, kernel=3)
    brew.conv(m, "c1", "c2", 8, 8, kernel=3, weight_init=("GaussianFill", {"std": 0.01}))
    init_types = [op.type for op in m.param_init_net.Proto().op]
    assert init_types == ["MSRAFill", "ConstantFill", "GaussianFill", "ConstantFill"]
    conv_op = m.net.Proto().op[0]
    assert conv_op.engine == "" and [a.name for a in conv_op.arg] == ["kernel", "order"]
    assert list(arg_value(m.param_init_net.Proto().op[0], "shape")) == [8, 3, 3, 3]  # NHWC

    def twice(model, blob_in, blob_out, **kwargs):
        return model.net.Scale(blob_in, blob_out, scale=2.0)
    if not brew.has_helper("twice"):
        brew.Register(twice)
    assert brew.has_helper(twice) and str(brew.twice(m, "c2", "c3")) == "c3"
    with pytest.raises(AttributeError):
        brew.Register(twice)
    with pytest.raises(AttributeError):
        brew.not_a_helper
    with pytest.raises(TypeError):
        brew.relu("not a model", "x", "y")


def test_model_creates_raw_ops_by_attribute():
    m = model_helper.ModelHelper(name="raw")
    y = m.Relu("x", "y")
    assert str(y) == "y" and m.net.Proto().op[0].type == "Relu"
    assert m.params == []
    with pytest.raises(AttributeError, match="Rleu"):
        m.Rleu("x", "y")


def test_tensor_protos_db_input_builds_a_reader_and_reads_the_lmdb():
    if not core.IsOperator("CreateDB"):
        pytest.skip("CreateDB / TensorProtosDBInput ops are not registered yet")
    db = ref("lmdb", "tensorprotos_byte.lmdb")
    m = model_helper.ModelHelper(name="reader")
    data, label = m.TensorProtosDBInput([], ["data", "label"], batch_size=4, db=db,
                                        db_type="lmdb")
    reader = m.param_init_net.Proto().op[0]
    assert reader.type == "CreateDB" and list(reader.output) == ["dbreader_" + db]
    read = m.net.Proto().op[0]
    assert read.type == "TensorProtosDBInput" and list(read.input) == ["dbreader_" + db]
    assert list(read.output) == ["data", "label"] and arg_value(read, "batch_size") == 4
    expected = np.load(db + ".expected.npz")
    workspace.RunNetOnce(m.param_init_net)
    workspace.CreateNet(m.net)
    for batch in range(3):
        workspace.RunNet(m.net.Proto().name)
        np.testing.assert_array_equal(workspace.FetchBlob(data),
                                      expected["images"][4 * batch:4 * batch + 4])
        np.testing.assert_array_equal(workspace.FetchBlob(label),
                                      expected["labels"][4 * batch:4 * batch + 4])


def small_classifier(name="clf"):
    m = model_helper.ModelHelper(name=name)
    brew.fc(m, "x", "fc", 4, 3)
    m.net.SoftmaxWithLoss(["fc", "label"], ["prob", "loss"])
    m.AddGradientOperators(["loss"])
    return m


def feed_small_classifier(m):
    r = np.random.RandomState(1)
    workspace.RunNetOnce(m.param_init_net)
    workspace.FeedBlob("x", r.randn(6, 4).astype(np.float32))
    workspace.FeedBlob("label", r.randint(0, 3, 6).astype(np.int32))
    workspace.FeedBlob("fc_w", (r.randn(3, 4) * 0.1).astype(np.float32))


def test_build_sgd_without_momentum_uses_weighted_sum_with_a_negative_lr():
    m = small_classifier()
    optimizer.build_sgd(m, base_learning_rate=0.5, policy="step", stepsize=10, gamma=0.9)
    ops = m.net.Proto().op
    lr_op = [op for op in ops if op.type == "LearningRate"][0]
    assert list(lr_op.output) == ["SgdOptimizer_0_lr_cpu"]
    assert [(a.name, arg_value(lr_op, a.name)) for a in lr_op.arg if a.name != "policy"] == [
        ("base_lr", -0.5), ("stepsize", 10), ("gamma", pytest.approx(0.9))]
    updates = [op for op in ops if op.type == "WeightedSum"]
    assert [list(op.input) for op in updates] == [
        ["fc_w", "ONE_0_0", "fc_w_grad", "SgdOptimizer_0_lr_cpu"],
        ["fc_b", "ONE_0_0", "fc_b_grad", "SgdOptimizer_0_lr_cpu"]]
    feed_small_classifier(m)
    before = workspace.FetchBlob("fc_w")
    workspace.RunNetOnce(m.net)
    after = workspace.FetchBlob("fc_w")
    np.testing.assert_allclose(after, before - 0.5 * workspace.FetchBlob("fc_w_grad"), rtol=1e-5,
                               atol=1e-7)
    assert workspace.FetchBlob("optimizer_iteration").tolist() == [1]


def test_build_sgd_needs_a_positive_rate_and_gradients_first():
    m = small_classifier()
    with pytest.raises(ValueError, match="positive"):
        optimizer.build_sgd(m, base_learning_rate=-0.1)
    fresh = model_helper.ModelHelper(name="nograd")
    brew.fc(fresh, "x", "fc", 4, 3)
    with pytest.raises(RuntimeError, match="AddGradientOperators"):
        optimizer.build_sgd(fresh, base_learning_rate=0.1)


def test_nesterov_is_the_default_and_can_be_turned_off():
    m = small_classifier("nesterov_default")
    optimizer.build_sgd(m, base_learning_rate=0.1, momentum=0.9)
    m2 = small_classifier("nesterov_off")
    optimizer.build_sgd(m2, base_learning_rate=0.1, momentum=0.9, nesterov=0)
    (first,) = [op for op in m.net.Proto().op if op.type == "MomentumSGDUpdate"][:1]
    (second,) = [op for op in m2.net.Proto().op if op.type == "MomentumSGDUpdate"][:1]
    assert arg_value(first, "nesterov") == 1 and arg_value(second, "nesterov") == 0
    lr_ops = [op for op in m2.net.Proto().op if op.type == "LearningRate"]
    assert list(lr_ops[0].output) == ["SgdOptimizer_1_lr_cpu"]  # per-class instance numbers
    assert arg_value(lr_ops[0], "base_lr") == pytest.approx(0.1)  # MomentumSGDUpdate subtracts


def test_weight_decay_touches_weights_only():
    m = model_helper.ModelHelper(name="wd")
    brew.spatial_bn(m, "x", "bn", 4)
    brew.fc(m, "bn", "fc", 4, 3)
    m.net.SoftmaxWithLoss(["fc", "label"], ["prob", "loss"])
    m.AddGradientOperators(["loss"])
    optimizer.add_weight_decay(m, 1e-4)
    decayed = [op.input[2] for op in m.net.Proto().op if op.type == "WeightedSum"]
    assert decayed == ["bn_s", "fc_w"]


def test_build_adam_and_multi_precision_sgd():
    m = small_classifier("adam")
    optimizer.build_adam(m, base_learning_rate=0.01, beta1=0.8)
    (adam,) = [op for op in m.net.Proto().op if op.type == "Adam"][:1]
    assert list(adam.input) == ["fc_w", "fc_w_first_moment", "fc_w_second_moment", "fc_w_grad",
                                "AdamOptimizer_0_lr_cpu", "optimizer_iteration"]
    assert arg_value(adam, "beta1") == pytest.approx(0.8)
    lr_op = [op for op in m.net.Proto().op if op.type == "LearningRate"][0]
    assert arg_value(lr_op, "base_lr") == pytest.approx(-0.01)
    feed_small_classifier(m)
    before = workspace.FetchBlob("fc_w")
    workspace.RunNetOnce(m.net)
    assert not np.array_equal(workspace.FetchBlob("fc_w"), before)

    mp = small_classifier("multi_precision")
    optimizer.build_multi_precision_sgd(mp, base_learning_rate=0.1, momentum=0.9)
    # fp32 params (no fp16 master copy): the plain momentum update under the class's own name
    updates = [op for op in mp.net.Proto().op if op.type == "MomentumSGDUpdate"]
    assert [list(op.input) for op in updates] == [
        [p + "_grad", p + "_momentum", "MultiPrecisionSgdOptimizer_0_lr_cpu", p]
        for p in ("fc_w", "fc_b")]


def test_gradient_ascent_with_a_positive_lr_is_allowed():
    """A hand-written WeightedSum with a positive lr climbs the gradient: legal in Caffe2."""
    m = small_classifier("ascent")
    lr = m.param_init_net.ConstantFill([], "LR_UP", shape=[1], value=0.5)
    one = m.param_init_net.ConstantFill([], "ONE", shape=[1], value=1.0)
    for p in m.params:
        m.net.WeightedSum([p, one, m.param_to_grad[p], lr], p)
    feed_small_classifier(m)
    before = workspace.FetchBlob("fc_w")
    workspace.RunNetOnce(m.net)
    np.testing.assert_allclose(workspace.FetchBlob("fc_w"),
                               before + 0.5 * workspace.FetchBlob("fc_w_grad"),
                               rtol=1e-5, atol=1e-7)
