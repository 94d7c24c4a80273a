"""Classifier surgery and the fine-tune builder: params, the frozen boundary, BN freezing, audit."""
import os

import numpy as np
import pytest

from food101 import zoo
from tests.support import REPO, ZOO
from tests.support.zoo_models import bn_zoo_model
from food101.caffe2 import workspace
from food101.caffe2.proto import caffe2_pb2
from food101.caffe2.utils import ArgsToDict

MEAN = np.array([104.0, 117.0, 123.0], np.float32)


@pytest.fixture(scope="module")
def squeezenet():
    return zoo.load(ZOO)


@pytest.fixture(scope="module")
def food(squeezenet):
    return zoo.replace_classifier(squeezenet, num_classes=101)


def _ops(model, op_type=None):
    ops = model.net.Proto().op if hasattr(model, "net") else model.op
    return [op for op in ops if op_type is None or op.type == op_type]


def _arg(op, name):
    return ArgsToDict(op.arg).get(name)


def _batch(rs, n=2, size=64, classes=101):
    return (rs.randint(0, 256, (n, 3, size, size)).astype(np.uint8),
            rs.randint(0, classes, n).astype(np.int32))


def _train(model, batches, base_lr=0.05, **sgd):
    """Init, then one RunNet per batch; returns the losses."""
    workspace.RunNetOnce(model.param_init_net)
    workspace.FeedBlob(model.finetune.input_blob, batches[0][0])
    workspace.FeedBlob("label", batches[0][1])
    workspace.CreateNet(model.net)
    losses = []
    for data, label in batches:
        workspace.FeedBlob(model.finetune.input_blob, data)
        workspace.FeedBlob("label", label)
        workspace.RunNet(model.net.Proto().name)
        losses.append(float(workspace.FetchBlob("loss")))
    return losses


# ------------------------------------------------------------------------------- surgery
def test_replace_classifier_swaps_conv10_for_a_101_way_layer(squeezenet, food):
    assert food.num_classes == 101 and squeezenet.num_classes == 1000
    fills = {op.output[0]: op for op in food.init_net.op}
    assert fills["conv10_w"].type == "MSRAFill" and _arg(fills["conv10_w"], "shape") == [101, 512, 1, 1]
    assert fills["conv10_b"].type == "ConstantFill" and _arg(fills["conv10_b"], "value") == 0.0
    assert [op.type for op in food.init_net.op].count("GivenTensorFill") == 50  # 1000-way weights gone
    assert food.param_shapes["conv10_w"] == (101, 512, 1, 1)
    # the structure after conv10 is kept and the output blob is the same
    tail = [(op.type, op.output[0]) for op in food.predict_net.op[-4:]]
    assert tail == [("Conv", "conv10"), ("Relu", "conv10"), ("AveragePool", "pool10"),
                    ("Softmax", "softmaxout")]
    assert food.output_name == "softmaxout"
    with open(os.path.join(REPO, "models", "food101", "classes.txt")) as fh:
        assert food.class_names == fh.read().split()
    # the original model is untouched
    assert squeezenet.param_shapes["conv10_w"] == (1000, 512, 1, 1)


def test_surgered_model_runs_to_a_101_way_output(food):
    workspace.RunNetOnce(food.init_net)
    workspace.FeedBlob("data", np.random.RandomState(0).randn(2, 3, 64, 64).astype(np.float32) * 50)
    workspace.RunNetOnce(food.predict_net)
    out = workspace.FetchBlob("softmaxout")
    assert out.shape == (2, 101, 1, 1)
    np.testing.assert_allclose(out.sum(axis=1).ravel(), 1.0, atol=1e-5)
    w = workspace.FetchBlob("conv10_w")  # MSRAFill: std sqrt(2 / fan_out), fan_out = 101
    assert abs(w.std() - np.sqrt(2.0 / 101)) < 0.01


@pytest.mark.parametrize("init,fill", [("xavier", "XavierFill"), ("gaussian", "GaussianFill"),
                                       (("UniformFill", {"min": -0.1, "max": 0.1}), "UniformFill")])
def test_weight_init_choices(squeezenet, init, fill):
    m = zoo.replace_classifier(squeezenet, 10, weight_init=init)
    op = [op for op in m.init_net.op if op.output[0] == "conv10_w"][0]
    assert op.type == fill
    if init == "gaussian":
        assert _arg(op, "std") == pytest.approx(0.01)
    assert m.class_names == ["class_%d" % i for i in range(10)]


def test_surgery_errors(squeezenet):
    with pytest.raises(zoo.ZooError, match="weight_init"):
        zoo.replace_classifier(squeezenet, 101, weight_init="kaiming-ish")
    with pytest.raises(zoo.ZooError, match="3 class names for num_classes=4"):
        zoo.replace_classifier(squeezenet, 4, class_names=["a", "b", "c"])


# ------------------------------------------------------------------------------- the builder
def test_only_the_new_layer_is_a_param_and_a_stop_gradient_guards_the_boundary(food):
    model = zoo.build_finetune_model(food)
    assert [str(p) for p in model.params] == ["conv10_w", "conv10_b"]
    info = model.finetune
    assert info.boundary == {"fire9/concat": "fire9/concat_frozen"}
    stops = [(op.input[0], op.output[0]) for op in _ops(model, "StopGradient")]
    assert stops == [("data_c", "data"), ("fire9/concat", "fire9/concat_frozen")]
    conv10 = [op for op in _ops(model, "Conv") if op.output[0] == "conv10"][0]
    assert conv10.input[0] == "fire9/concat_frozen"
    assert set(info.frozen_blobs) == set(food.params) - {"conv10_w", "conv10_b"} | {"mean"}
    # gradients start at the boundary: no zoo weight and no backbone activation gets one
    (grad_op,) = _ops(model, "AutogradGradient")
    grads = set(grad_op.output)
    assert {"conv10_w_grad", "conv10_b_grad"} <= grads
    assert not any(b + "_grad" in grads for b in info.frozen_blobs)
    assert not any(g.startswith("fire") and g != "fire9/concat_frozen_grad" for g in grads)
    assert "data_grad" not in grads
    # input: uint8 -> Cast -> Sub mean (broadcast on axis 1) -> StopGradient
    first = [(op.type, list(op.input), list(op.output)) for op in _ops(model)[:3]]
    assert first == [("Cast", ["data_uint8"], ["data_f"]), ("Sub", ["data_f", "mean"], ["data_c"]),
                     ("StopGradient", ["data_c"], ["data"])]
    sub = _ops(model, "Sub")[0]
    assert _arg(sub, "broadcast") == 1 and _arg(sub, "axis") == 1


def test_a_1000_way_zoo_model_is_re_headed_by_the_builder(squeezenet):
    model = zoo.build_finetune_model(squeezenet, num_classes=101)
    assert model.finetune.num_classes == 101
    assert model.finetune.deploy.param_shapes["conv10_w"] == (101, 512, 1, 1)


def test_training_changes_only_the_new_layer_frozen_audit_is_clean(food):
    model = zoo.build_finetune_model(food)
    zoo.build_finetune_sgd(model, 0.05, weight_decay=5e-4, policy="step", stepsize=2, gamma=0.5,
                           momentum=0.9)
    rs = np.random.RandomState(1)
    workspace.RunNetOnce(model.param_init_net)
    before = zoo.frozen_checksums(model)
    w0 = workspace.FetchBlob("conv10_w").copy()
    assert len(before) == 51 and all(before.values())
    losses = _train(model, [_batch(rs) for _ in range(3)])
    assert np.all(np.isfinite(losses))
    assert not np.array_equal(workspace.FetchBlob("conv10_w"), w0)
    audit = zoo.audit_frozen(before, model)
    assert audit.ok and audit.checked == 51, audit.report()
    assert "51 blobs bit-identical" in audit.check().report()
    # the audit does notice a change to a frozen blob
    workspace.FeedBlob("fire5/expand3x3_w", workspace.FetchBlob("fire5/expand3x3_w") * 1.0000001 + 1e-9)
    bad = zoo.audit_frozen(before, model)
    assert not bad.ok and bad.changed == ["fire5/expand3x3_w"]
    with pytest.raises(zoo.ZooError, match="fire5/expand3x3_w"):
        bad.check()


def test_zoo_weights_in_the_workspace_are_the_zoo_values(squeezenet, food):
    model = zoo.build_finetune_model(food)
    workspace.RunNetOnce(model.param_init_net)
    weights = squeezenet.weights()
    for name in ("conv1_w", "fire9/expand3x3_b"):
        np.testing.assert_array_equal(workspace.FetchBlob(name), weights[name])
    np.testing.assert_array_equal(workspace.FetchBlob("mean"), MEAN)


def test_dropout_follows_the_phase(food):
    train = zoo.build_finetune_model(food)
    (drop,) = _ops(train, "Dropout")
    assert _arg(drop, "is_test") == 0 and list(drop.output) == ["fire9/concat", "_fire9/concat_mask"]
    fixed = zoo.build_finetune_model(food, train_dropout=False)
    assert _arg(_ops(fixed, "Dropout")[0], "is_test") == 1
    test = zoo.build_finetune_model(food, is_test=True, param_model=train)
    (drop,) = _ops(test, "Dropout")
    assert _arg(drop, "is_test") == 1 and list(drop.output) == ["fire9/concat"]


def test_the_test_net_shares_params_and_runs_without_gradients(food):
    train = zoo.build_finetune_model(food)
    init_ops = len(train.param_init_net.Proto().op)
    test = zoo.build_finetune_model(food, is_test=True, param_model=train)
    assert [str(p) for p in train.params] == ["conv10_w", "conv10_b"]  # not registered twice
    assert not _ops(test, "AutogradGradient")
    assert test.param_init_net is train.param_init_net and len(test.param_init_net.Proto().op) == init_ops
    workspace.RunNetOnce(train.param_init_net)
    data, label = _batch(np.random.RandomState(2), n=3)
    workspace.FeedBlob("data_uint8", data)
    workspace.FeedBlob("label", label)
    workspace.RunNetOnce(test.net)
    assert workspace.FetchBlob("softmaxout").shape == (3, 101, 1, 1)
    assert 0.0 <= float(workspace.FetchBlob("accuracy")) <= float(workspace.FetchBlob("accuracy_top5")) <= 1.0


def test_float_input_is_already_mean_subtracted(food):
    as_uint8 = zoo.build_finetune_model(food, is_test=True, name="u8")
    as_float = zoo.build_finetune_model(food, is_test=True, input_kind="float", name="f32")
    first = _ops(as_float)[0]
    assert (first.type, list(first.input), list(first.output)) == ("StopGradient", ["data"], ["data"])
    workspace.RunNetOnce(food.init_net)
    workspace.FeedBlob("mean", MEAN)
    data, label = _batch(np.random.RandomState(3))
    workspace.FeedBlob("label", label)
    workspace.FeedBlob("data_uint8", data)
    workspace.RunNetOnce(as_uint8.net)
    want = workspace.FetchBlob("softmaxout")
    workspace.FeedBlob("data", data.astype(np.float32) - MEAN.reshape(1, 3, 1, 1))
    workspace.RunNetOnce(as_float.net)
    np.testing.assert_allclose(workspace.FetchBlob("softmaxout"), want, rtol=1e-5, atol=1e-7)


def test_unfreeze_deeper_with_an_lr_multiplier(food):
    model = zoo.build_finetune_model(food, unfreeze_from="fire9", lr_mult=0.1)
    fire9 = ["fire9/squeeze1x1_w", "fire9/squeeze1x1_b", "fire9/expand1x1_w", "fire9/expand1x1_b",
             "fire9/expand3x3_w", "fire9/expand3x3_b"]
    assert [str(p) for p in model.params] == fire9 + ["conv10_w", "conv10_b"]
    assert model.finetune.boundary == {"fire8/concat": "fire8/concat_frozen"}
    assert model.finetune.lr_mult["fire9/expand3x3_w"] == 0.1 and model.finetune.lr_mult["conv10_w"] == 1.0
    assert not any(b.startswith("fire9") for b in model.finetune.frozen_blobs)
    (grad_op,) = _ops(model, "AutogradGradient")
    assert "fire9/squeeze1x1_w_grad" in grad_op.output and "fire8/squeeze1x1_w_grad" not in grad_op.output
    zoo.build_finetune_sgd(model, 0.05, policy="fixed", momentum=0.9)
    lr_ops = _ops(model, "LearningRate")
    assert len(lr_ops) == 2
    rs = np.random.RandomState(4)
    workspace.RunNetOnce(model.param_init_net)
    before = zoo.frozen_checksums(model)
    w9 = workspace.FetchBlob("fire9/expand3x3_w").copy()
    _train(model, [_batch(rs)])
    rates = sorted(abs(float(workspace.FetchBlob(op.output[0]).ravel()[0])) for op in lr_ops)
    np.testing.assert_allclose(rates, [0.005, 0.05], rtol=1e-6)
    assert not np.array_equal(workspace.FetchBlob("fire9/expand3x3_w"), w9)
    assert zoo.audit_frozen(before, model).ok


def test_freeze_up_to_a_blob(food):
    model = zoo.build_finetune_model(food, freeze_up_to="fire8/concat")
    assert model.finetune.boundary == {"fire8/concat": "fire8/concat_frozen"}
    assert "fire9/squeeze1x1_w" in [str(p) for p in model.params]


def test_builder_errors_name_the_problem(food):
    with pytest.raises(zoo.ZooError, match="fire9/concat"):
        zoo.build_finetune_model(food, freeze_up_to="fire9/concatt")
    with pytest.raises(zoo.ZooError, match="fire7"):
        zoo.build_finetune_model(food, unfreeze_from="fire77")
    with pytest.raises(zoo.ZooError, match="not both"):
        zoo.build_finetune_model(food, freeze_up_to="fire9/concat", unfreeze_from="fire9")
    with pytest.raises(zoo.ZooError, match="input_kind"):
        zoo.build_finetune_model(food, input_kind="uint16")
    with pytest.raises(zoo.ZooError, match="lr_mult key 'fire3'"):
        zoo.build_finetune_model(food, unfreeze_from="fire9", lr_mult={"fire3": 0.5})


# ------------------------------------------------------------------------------- SpatialBN
def _bn_batches(n):
    rs = np.random.RandomState(6)
    return [(rs.randint(0, 256, (4, 3, 12, 12)).astype(np.uint8), rs.randint(0, 5, 4).astype(np.int32))
            for _ in range(n)]


def test_frozen_spatial_bn_runs_in_test_mode_and_its_statistics_do_not_move(tmp_path):
    model_zoo = bn_zoo_model()
    model_zoo.save(tmp_path / "bn_zoo")  # through the folder format, as a real zoo model
    loaded = zoo.load(tmp_path / "bn_zoo")
    model = zoo.build_finetune_model(loaded, num_classes=5)
    for op in _ops(model, "SpatialBN"):
        assert _arg(op, "is_test") == 1 and len(op.output) == 1
    assert [str(p) for p in model.params] == ["conv10_w", "conv10_b"]
    assert {"bn1_rm", "bn1_riv", "bn2_rm", "bn2_riv"} <= set(model.finetune.frozen_blobs)
    zoo.build_finetune_sgd(model, 0.1, policy="fixed")
    workspace.RunNetOnce(model.param_init_net)
    before = zoo.frozen_checksums(model)
    rm = workspace.FetchBlob("bn1_rm").copy()
    _train(model, _bn_batches(4))
    np.testing.assert_array_equal(workspace.FetchBlob("bn1_rm"), rm)
    assert zoo.audit_frozen(before, model).ok


def test_unfrozen_spatial_bn_trains_and_updates_its_statistics():
    model = zoo.build_finetune_model(bn_zoo_model(), num_classes=5, unfreeze_from="c1")
    bns = _ops(model, "SpatialBN")
    assert all(_arg(op, "is_test") == 0 and len(op.output) == 5 for op in bns)
    assert list(bns[0].output[:3]) == ["bn1", "bn1_rm", "bn1_riv"]
    params = [str(p) for p in model.params]
    assert params == ["c1_w", "c1_b", "bn1_s", "bn1_b", "c2_w", "c2_b", "bn2_s", "bn2_b",
                      "conv10_w", "conv10_b"]
    assert {str(p) for p in model.GetComputedParams()} == {"bn1_rm", "bn1_riv", "bn2_rm", "bn2_riv"}
    assert model.finetune.boundary == {} and model.finetune.frozen_blobs == ["mean"]
    zoo.build_finetune_sgd(model, 0.1, policy="fixed")
    workspace.RunNetOnce(model.param_init_net)
    rm = workspace.FetchBlob("bn1_rm").copy()
    _train(model, _bn_batches(2))
    assert not np.array_equal(workspace.FetchBlob("bn1_rm"), rm)
    # its test net reads the running statistics in test mode
    test = zoo.build_finetune_model(bn_zoo_model(), num_classes=5, unfreeze_from="c1", is_test=True,
                                    param_model=model)
    assert all(_arg(op, "is_test") == 1 and len(op.output) == 1 for op in _ops(test, "SpatialBN"))
