"""Story 3: layers "frozen" with lr_mult: 0, propagate_down: false, even base_lr: 0, yet the
loss changes every iteration and accuracy falls from 80% to 0: BatchNorm in training mode
still normalises with batch statistics and moves its running mean/variance.

Small scale (the shape of caffe2_reference/train/bn_freeze.json): Conv -> SpatialBN -> Relu ->
FC, only the FC registered as params. With is_test=0 the diagnostics must say, before training,
that the running stats will drift and name the SpatialBN op, and after the first iterations that
the frozen blobs changed, naming the op that wrote them. With is_test=1, or with a BN layer that
is really trained, they stay quiet.
"""
import numpy as np
import pytest

from food101.caffe2 import brew, model_helper, optimizer, workspace
from food101.diagnostics import ERROR, WARNING, Diagnostics, analyze_nets

ITERS = 6


def bn_net(is_test, train_bn=False, base_lr=0.1):
    model = model_helper.ModelHelper(name="bn_is_test_%d" % is_test)
    model.net.Conv(["data", "conv_w", "conv_b"], "conv", kernel=3, pad=1)
    if train_bn:
        brew.spatial_bn(model, "conv", "bn", 4, is_test=is_test, epsilon=1e-5, momentum=0.9)
    else:
        outputs = ["bn"] + ([] if is_test else ["bn_rm", "bn_riv", "bn_sm", "bn_siv"])
        model.net.SpatialBN(["conv", "bn_s", "bn_b", "bn_rm", "bn_riv"], outputs,
                            is_test=is_test, epsilon=1e-5, momentum=0.9)
    brew.relu(model, "bn", "bn")
    brew.fc(model, "bn", "fc", 4 * 6 * 6, 3)
    model.net.SoftmaxWithLoss(["fc", "label"], ["prob", "loss"])
    model.AddGradientOperators(["loss"])
    optimizer.build_sgd(model, base_learning_rate=base_lr, policy="fixed")
    return model


def pretrained(rng):
    return {"conv_w": (rng.randn(4, 2, 3, 3) * 0.3).astype(np.float32),
            "conv_b": rng.randn(4).astype(np.float32),
            "bn_s": np.ones(4, np.float32), "bn_b": np.zeros(4, np.float32),
            "bn_rm": np.zeros(4, np.float32), "bn_riv": np.ones(4, np.float32)}


def train(model, feed_bn=True):
    rng = np.random.RandomState(9)
    workspace.RunNetOnce(model.param_init_net)
    zoo = pretrained(rng)
    for name, value in zoo.items():
        if feed_bn or not name.startswith("bn"):  # a trained BN layer keeps its fresh fills
            workspace.FeedBlob(name, value)
    batches = [((rng.randn(5, 2, 6, 6) * 3 + 2).astype(np.float32),
                rng.randint(0, 3, 5).astype(np.int32)) for _ in range(ITERS)]
    workspace.FeedBlob("data", batches[0][0])
    workspace.FeedBlob("label", batches[0][1])
    workspace.CreateNet(model.net)
    diag = Diagnostics({"health_interval": 2, "stats_interval": 0, "divergence_policy": "stop"},
                       num_classes=3, max_iter=ITERS)
    start = diag.on_start(model.net, model.param_init_net, model.params, workspace)
    for it, (data, labels) in enumerate(batches, start=1):
        diag.on_batch(it, data, labels)
        workspace.FeedBlob("data", data)
        workspace.FeedBlob("label", labels)
        workspace.RunNet(model.net)
        diag.after_iteration(it, float(workspace.FetchBlob("loss")), workspace)
    return diag, start, zoo


def test_training_mode_bn_frozen_by_lr_mult_is_flagged_before_training():
    findings = analyze_nets(bn_net(is_test=0).net, params=["fc_w", "fc_b"])
    drift = [f for f in findings if f.code == "bn_running_stats_drift"]
    assert len(drift) == 1 and drift[0].severity == ERROR
    message = drift[0].message
    assert "running stats will drift; op #1 SpatialBN 'bn' writes 'bn_rm' and 'bn_riv'" \
        in message.replace(": op", "; op")
    for term in ("is_test=0", "is_test=1", "use_global_stats", "lr_mult: 0", "propagate_down"):
        assert term in message
    assert (drift[0].where.op_index, drift[0].where.op_type, drift[0].where.blob) == \
        (1, "SpatialBN", "bn_rm")


def test_running_stats_drift_is_detected_and_the_writing_op_named():
    diag, start, zoo = train(bn_net(is_test=0))
    assert "bn_running_stats_drift" in [f.code for f in start]
    changed = [f for f in diag.findings if f.code == "frozen_blob_changed"]
    assert {f.where.blob for f in changed} == {"bn_rm", "bn_riv"}
    first = changed[0]
    assert first.severity == ERROR and first.iteration == 1
    assert "frozen blob 'bn_rm' changed" in first.message
    assert "op #1 SpatialBN 'bn'" in first.message and "is_test=0" in first.message
    assert (first.where.op_index, first.where.op_type) == (1, "SpatialBN")
    # the frozen conv itself did not move: only BN's statistics did
    np.testing.assert_array_equal(workspace.FetchBlob("conv_w"), zoo["conv_w"])
    assert not np.array_equal(workspace.FetchBlob("bn_rm"), zoo["bn_rm"])


@pytest.mark.parametrize("variant", ["is_test=1", "trained BN"])
def test_test_mode_or_trained_bn_stays_quiet(variant):
    model = bn_net(is_test=1, base_lr=0.01) if variant == "is_test=1" else \
        bn_net(is_test=0, train_bn=True, base_lr=0.01)
    diag, start, zoo = train(model, feed_bn=variant == "is_test=1")
    loud = [str(f) for f in diag.findings if f.severity in (WARNING, ERROR)]
    assert loud == []
    if variant == "is_test=1":
        np.testing.assert_array_equal(workspace.FetchBlob("bn_rm"), zoo["bn_rm"])


def test_base_lr_zero_is_explained_and_bn_still_named():
    diag, start, zoo = train(bn_net(is_test=0, base_lr=0.0))
    idle = [f for f in start if f.code == "params_not_updated"]
    assert idle and "'fc_w'" in idle[0].message and "SpatialBN in training mode" in idle[0].message
    changed = [f for f in diag.findings if f.code == "frozen_blob_changed"]
    assert changed and "op #1 SpatialBN 'bn'" in changed[0].message
    assert "vanishing_updates" not in diag.codes()  # fc_w not moving is the setting, not a symptom
