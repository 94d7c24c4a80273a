"""Story 4: GoogLeNet fine-tuning reaches 50% top-1, then at iteration 119,040 the loss jumps
back to its initial value and never recovers, at the same iteration in every run: one record
of the LMDB poisons the weights.

Small scale: an LMDB of TensorProtos records in which one record is NaN (a broken decode) or
holds extreme values. The divergence guard must stop at the iteration that reads it, name the
record's key and the first non-finite blobs, write a JSON report and a reproducer, and with the
rollback policy continue from the last good state with a smaller learning rate (skipping the
record when it comes round again) until the run ends healthy.
"""
import json
import math
import os

import numpy as np
import pytest
import torch

from food101.caffe2 import core, model_helper, optimizer, workspace
from food101.caffe2.proto import caffe2_pb2
from food101.data.reader import LMDBReader
from food101.checkpoint import save_checkpoint
from food101.diagnostics import Diagnostics, DivergenceGuard, demo, reproduce

CLASSES, BATCH, RECORDS, POISONED = 4, 8, 48, 21
POISONED_KEY = "%08d" % POISONED


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def poisoned_lmdb(tmp_path, poison):
    images, labels = [], []
    for batch_images, batch_labels in demo.colour_batches(RECORDS // BATCH, batch_size=BATCH,
                                                          num_classes=CLASSES, seed=4):
        images.extend(batch_images)
        labels.extend(batch_labels)
    path = str(tmp_path / "train.lmdb")
    demo.write_lmdb(path, images, labels, poison={POISONED: poison})
    return path


def build_model(device=None):
    """Fine-tuning: a frozen pretrained backbone, a new classifier."""
    model = model_helper.ModelHelper(name="story4")
    with core.DeviceScope(device or caffe2_pb2.DeviceOption()):
        features = demo.add_backbone(model, "data", depth=2, width=8, trainable=False)
        loss = demo.add_classifier(model, features, 8 * 8 * 8, CLASSES)
        model.AddGradientOperators([loss])
        optimizer.build_sgd(model, base_learning_rate=0.01, policy="fixed", momentum=0.9)
    workspace.RunNetOnce(model.param_init_net)
    for name, value in demo.tiny_zoo_weights(depth=2, width=8).items():
        if not name.startswith("pred"):
            workspace.FeedBlob(name, value, device)
    return model


def batches(reader):
    """Endless (images, labels, keys) in key order, the way a Caffe2 DB cursor walks it."""
    position = 0
    while True:
        indices = [(position + i) % reader.num_records for i in range(BATCH)]
        position += BATCH
        images, labels = reader.load_batch(indices)
        yield images, labels, [reader.keys[i].decode("ascii") for i in indices]


def train(tmp_path, poison, policy, iterations=14, device=None, **settings):
    reader = LMDBReader(poisoned_lmdb(tmp_path, poison), batch_size=BATCH)
    model = build_model(device)
    stream = batches(reader)
    images, labels, _ = next(batches(reader))
    workspace.FeedBlob("data", images, device)
    workspace.FeedBlob("label", labels, device)
    workspace.CreateNet(model.net)
    config = {"divergence_policy": policy, "spike_factor": 3.0, "spike_warmup": 2,
              "good_state_interval": 2, "stats_interval": 0, "health_interval": 0}
    config.update(settings)
    diag = Diagnostics(config, output_dir=str(tmp_path / "run"), num_classes=CLASSES,
                       max_iter=iterations)
    diag.on_start(model.net, model.param_init_net, model.params, workspace)
    log = []  # (iteration, action, loss)
    it = 0
    while it < iterations:
        images, labels, keys = next(stream)
        if diag.on_batch(it + 1, images, labels, keys) == "skip":
            log.append((it + 1, "skipped batch", None))
            continue
        workspace.FeedBlob("data", images, device)
        workspace.FeedBlob("label", labels, device)
        workspace.RunNet(model.net)
        loss = float(workspace.FetchBlob("loss"))
        action = diag.after_iteration(it + 1, loss, workspace)
        log.append((it + 1, action, loss))
        if action == "continue":
            diag.stats_record(it + 1, workspace)
        if action == "stop":
            break
        it = diag.resume_iteration if action in ("skip", "rollback") else it + 1
    reader.close()
    return model, diag, log


@pytest.mark.parametrize("poison", ["nan", 1e30])
def test_rollback_names_the_poisoned_record_and_recovers(tmp_path, poison):
    model, diag, log = train(tmp_path, poison, "rollback")
    assert len(diag.reports) == 1
    report = diag.reports[0]
    assert report.iteration == 3  # records 16..23 form the third batch
    assert report.reason == ("nonfinite_loss" if poison == "nan" else "loss_spike")
    assert report.suspect_keys == [POISONED_KEY]
    assert POISONED_KEY in report.keys and len(report.keys) == BATCH
    text = str(report)
    assert "Divergence at iteration 3" in text and POISONED_KEY in text
    if poison == "nan":
        assert report.first_nonfinite[0]["blob"] == "data"
        assert report.first_nonfinite[0]["stage"] == "input"
        assert "non-finite values in the image" in text
    else:
        assert "extreme values" in text

    # rolled back to the last good state with half the learning rate
    assert report.action == "rollback" and report.resume_iteration == 1
    assert report.lr_scaled_by == 0.5
    lr = [op for op in model.net.Proto().op if op.type == "LearningRate"][0]
    assert [a.f for a in lr.arg if a.name == "base_lr"] == [pytest.approx(0.005)]
    assert float(workspace.FetchBlob(lr.output[0])[0]) == pytest.approx(0.005)

    # the record comes round again in the next epoch and is skipped, training ends healthy
    assert any(action == "skipped batch" for _, action, _ in log)
    losses = [loss for _, action, loss in log if action == "continue"]
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-3:]) < np.mean(losses[:2])
    for param in model.params:
        assert np.isfinite(workspace.FetchBlob(param)).all()

    # the JSON report and the reproducer are on disk
    with open(report.report_path) as f:
        saved = json.load(f)
    assert saved["iteration"] == 3 and saved["suspects"][0]["key"] == POISONED_KEY
    assert os.path.exists(report.reproducer_path)
    records = diag.pending_records()
    assert [r["iteration"] for r in records if r.get("kind") == "divergence"] == [3]


def test_reproducer_reruns_exactly_the_bad_iteration(tmp_path):
    model, diag, log = train(tmp_path, "nan", "stop")
    assert log[-1][:2] == (3, "stop")
    report = diag.reports[0]
    replay = reproduce(report.reproducer_path)
    assert replay.iteration == 3
    assert math.isnan(replay.loss["loss"])
    assert replay.first_nonfinite[0]["blob"] == "data"
    assert [s["key"] for s in replay.suspects] == [POISONED_KEY]
    assert "non-finite" in str(replay)
    with pytest.raises(ValueError, match="re-runs iteration 3, not 4"):
        reproduce(report.reproducer_path, iteration=4)


def test_reproduce_from_a_training_checkpoint(tmp_path):
    """A trainer checkpoint taken after iteration 2 + the batch of iteration 3 re-run iteration 3."""
    model, diag, log = train(tmp_path, "nan", "stop")
    payload = torch.load(diag.reports[0].reproducer_path, weights_only=False)
    state = dict(payload["blobs"])
    batch = {"data": state.pop("data"), "label": state.pop("label")}
    ckpt = save_checkpoint(str(tmp_path / "snap_iter_2.ckpt"), iteration=2, blobs=state)
    replay = reproduce(ckpt, iteration=3, netdef=model.net, feeds=batch,
                       keys=payload["keys"])
    assert math.isnan(replay.loss["loss"])
    assert [s["key"] for s in replay.suspects] == [POISONED_KEY]
    with pytest.raises(ValueError, match="state after iteration 2"):
        reproduce(ckpt, iteration=5, netdef=model.net, feeds=batch)


def test_skip_policy_undoes_the_iteration(tmp_path):
    model, diag, log = train(tmp_path, "nan", "skip", iterations=5)
    assert [a for _, a, _ in log].count("skip") == 1
    report = diag.reports[0]
    assert report.action == "skip" and report.resume_iteration == 2
    iters = [int(workspace.FetchBlob("optimizer_iteration")[0])]
    assert iters == [5]  # the undone iteration does not count
    for param in model.params:
        assert np.isfinite(workspace.FetchBlob(param)).all()


def test_healthy_run_has_no_divergence(tmp_path):
    model, diag, log = train(tmp_path, 0.0, "rollback", iterations=8)  # a black image: harmless
    assert diag.reports == []
    assert all(action == "continue" for _, action, _ in log)


def test_guard_alone_spots_a_spike_against_the_running_average():
    workspace.FeedBlob("w", np.ones(3, np.float32))
    guard = DivergenceGuard(_empty_net(), policy="report", spike_factor=5, warmup=3)
    actions = [guard.after_iteration(i, loss, workspace) for i, loss in
               enumerate([1.0, 1.1, 0.9, 1.0, 9.0, 1.0], start=1)]
    assert actions == ["continue"] * 6
    assert [r.iteration for r in guard.reports] == [5]
    assert guard.reports[0].reason == "loss_spike" and "9x the running average" in str(
        guard.reports[0]).replace("9.0x", "9x")


def _empty_net():
    from food101.caffe2.proto import caffe2_pb2
    return caffe2_pb2.NetDef(name="empty")


def test_a_step_split_into_forward_backward_and_update_nets(tmp_path):
    """The trainer runs <net>_fwd_bwd then <net>_update; the diagnostics take both."""
    from food101.caffe2.proto import caffe2_pb2
    reader = LMDBReader(poisoned_lmdb(tmp_path, "nan"), batch_size=BATCH)
    model = build_model()
    ops = list(model.net.Proto().op)
    cut = next(i for i, op in enumerate(ops) if op.type == "AutogradGradient") + 1
    fwd_bwd = caffe2_pb2.NetDef(name="story4_fwd_bwd", op=ops[:cut])
    update = caffe2_pb2.NetDef(name="story4_update", op=ops[cut:])
    stream = batches(reader)
    images, labels, _ = next(batches(reader))
    workspace.FeedBlob("data", images)
    workspace.FeedBlob("label", labels)
    workspace.CreateNet(fwd_bwd)
    workspace.CreateNet(update, input_blobs=["pred_w_grad", "pred_b_grad"])  # fwd_bwd writes them
    diag = Diagnostics({"divergence_policy": "rollback", "good_state_interval": 2,
                        "spike_warmup": 2, "stats_interval": 3}, num_classes=CLASSES)
    diag.on_start([fwd_bwd, update], model.param_init_net, model.params, workspace)
    it, actions = 0, []
    while it < 6:
        images, labels, keys = next(stream)
        if diag.on_batch(it + 1, images, labels, keys) == "skip":
            continue
        workspace.FeedBlob("data", images)
        workspace.FeedBlob("label", labels)
        workspace.RunNet(fwd_bwd.name)
        workspace.RunNet(update.name)
        action = diag.after_iteration(it + 1, float(workspace.FetchBlob("loss")), workspace)
        actions.append(action)
        diag.stats_record(it + 1, workspace)
        it = diag.resume_iteration if action == "rollback" else it + 1
    reader.close()
    assert actions.count("rollback") == 1
    assert diag.reports[0].suspect_keys == [POISONED_KEY]
    lr_op = [op for op in update.op if op.type == "LearningRate"][0]
    assert float(workspace.FetchBlob(lr_op.output[0])[0]) == pytest.approx(0.005)
    assert "pred_w_grad" in diag.last_stats and "conv2" in diag.last_stats
    for param in model.params:
        assert np.isfinite(workspace.FetchBlob(param)).all()


@pytest.mark.cuda
def test_rollback_on_cuda(tmp_path):
    gpu = caffe2_pb2.DeviceOption(device_type=caffe2_pb2.CUDA, device_id=0)
    model, diag, log = train(tmp_path, "nan", "rollback", device=gpu, stats_interval=4)
    assert workspace.FetchTensor("pred_w").is_cuda
    report = diag.reports[0]
    assert report.iteration == 3 and report.suspect_keys == [POISONED_KEY]
    assert report.first_nonfinite[0]["blob"] == "data"
    losses = [loss for _, action, loss in log if action == "continue"]
    assert all(math.isfinite(v) for v in losses) and np.mean(losses[-3:]) < np.mean(losses[:2])
    assert diag.last_stats["pred_w_grad"].nan == 0 and diag.last_stats["conv1"].norm > 0
    replay = reproduce(report.reproducer_path)  # back onto the GPU the net names
    assert math.isnan(replay.loss["loss"]) and replay.blobs["pred_w"].is_cuda
