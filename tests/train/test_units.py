"""The training driver's parts that need no model: checkpoints, metrics, evaluation numbers, plots."""
import json
import os
import random

import numpy as np
import pytest
import torch

from food101 import checkpoint as ckpt
from food101.inference.evaluate import ClassificationMetrics, summary_lines, write_results
from food101.train.metrics import JsonlWriter, SmoothedLoss, read_jsonl, eval_log_lines, train_log_lines
from food101.inference.plots import plot_confusion
from food101.train.plots import plot_run


# ------------------------------------------------------------------------------ checkpoints
def test_checkpoint_round_trip_and_rng(tmp_path):
    from food101.caffe2 import workspace
    gen = torch.Generator().manual_seed(3)
    workspace.current().generator(torch.device("cpu"))  # create the workspace's CPU generator
    rng = ckpt.capture_rng(workspace.current(), {"augment": gen})
    expected = (torch.rand(3), np.random.rand(), random.random(), torch.rand(2, generator=gen),
                torch.rand(2, generator=workspace.current().generator(torch.device("cpu"))))
    path = ckpt.checkpoint_path(str(tmp_path / "snap" / "run"), 12)
    assert path.endswith("run_iter_12.ckpt")
    ckpt.save_checkpoint(path, iteration=12, blobs={"w": torch.arange(4.0)}, reader={"epoch": 1},
                         rng=rng, config={"solver": {"base_lr": 0.1}}, trainer={"x": 1})
    assert os.listdir(tmp_path / "snap") == ["run_iter_12.ckpt"]  # no temporary left behind
    state = ckpt.load_checkpoint(str(tmp_path))                    # a folder: newest checkpoint
    assert state["iteration"] == 12 and state["reader"] == {"epoch": 1}
    assert torch.equal(state["blobs"]["w"], torch.arange(4.0))
    ckpt.restore_rng(state["rng"], workspace.current(), {"augment": gen})
    again = (torch.rand(3), np.random.rand(), random.random(), torch.rand(2, generator=gen),
             torch.rand(2, generator=workspace.current().generator(torch.device("cpu"))))
    assert torch.equal(expected[0], again[0]) and expected[1] == again[1] and expected[2] == again[2]
    assert torch.equal(expected[3], again[3]) and torch.equal(expected[4], again[4])


def test_latest_checkpoint_picks_highest_iteration(tmp_path):
    for it in (5, 40, 100, 9):
        ckpt.save_checkpoint(ckpt.checkpoint_path(str(tmp_path / "p"), it), iteration=it, blobs={})
    ckpt.save_checkpoint(str(tmp_path / "p_best.ckpt"), iteration=7, blobs={})
    assert ckpt.latest_checkpoint(str(tmp_path)).endswith("p_iter_100.ckpt")


def test_failed_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "a_iter_1.ckpt")
    ckpt.save_checkpoint(path, iteration=1, blobs={"w": torch.ones(2)})

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(path, iteration=2, blobs={"w": torch.zeros(2)})
    monkeypatch.undo()
    assert ckpt.load_checkpoint(path)["iteration"] == 1
    assert os.listdir(tmp_path) == ["a_iter_1.ckpt"]


def test_bad_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.load_checkpoint(str(tmp_path / "nope.ckpt"))
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint"):
        ckpt.load_checkpoint(str(tmp_path))
    junk = tmp_path / "junk_iter_3.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="cannot read"):
        ckpt.load_checkpoint(str(junk))
    torch.save({"format": "other"}, str(junk))
    with pytest.raises(ckpt.CheckpointError, match="not a food101 training checkpoint"):
        ckpt.load_checkpoint(str(junk))


# ------------------------------------------------------------------------------ metrics
def test_smoothed_loss_is_caffes_average_loss():
    s = SmoothedLoss(3)
    assert [s.add(v) for v in (3, 6, 9, 12)] == [3, 4.5, 6, 9]
    t = SmoothedLoss(3)
    t.load_state_dict(s.state_dict())
    assert t.add(0) == s.add(0) == 7


def test_log_lines_parse_like_caffe_logs():
    import re
    lines = train_log_lines(40, 2.5, 0.01, 2.25, 0.5, 12.0, 384.0)
    assert re.match(r"Iteration (\d+), loss = ([\.\deE+-]+)", lines[0])
    assert re.search(r"lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)", lines[0]).group(1) == "0.01"
    assert "Train net output #0: accuracy = 0.5" in lines[1]
    test = eval_log_lines(100, {"top1": 0.5, "top5": 0.75, "loss": 1.5})
    assert test[0] == "Iteration 100, Testing net (#0)"
    assert test[1:] == ["    Test net output #0: top1 = 0.5", "    Test net output #1: top5 = 0.75",
                        "    Test net output #2: loss = 1.5"]


def test_jsonl_truncates_after_resume_point(tmp_path):
    path = str(tmp_path / "m.jsonl")
    w = JsonlWriter(path)
    for it in range(1, 6):
        w.write({"phase": "train", "iteration": it})
    w.close()
    w = JsonlWriter(path, truncate_after=3)
    w.write({"phase": "train", "iteration": 4, "again": True})
    w.close()
    records = read_jsonl(path)
    assert [r["iteration"] for r in records] == [1, 2, 3, 4] and records[-1]["again"]


# ------------------------------------------------------------------------------ evaluation
def test_classification_metrics():
    m = ClassificationMetrics(3, top_k=2)
    probs = torch.tensor([[0.7, 0.2, 0.1],     # true 0, predicted 0
                          [0.5, 0.3, 0.2],     # true 1, predicted 0, top-2 hit
                          [0.1, 0.3, 0.6],     # true 2, predicted 2
                          [0.6, 0.1, 0.3]])    # true 1, predicted 0, top-2 miss
    m.add(probs.reshape(4, 3, 1, 1), np.array([0, 1, 2, 1], np.int32))
    r = m.results(["a", "b", "c"])
    assert r["images"] == 4 and r["top1"] == 0.5 and r["top5"] == 0.75
    assert r["per_class"] == {"a": 1.0, "b": 0.0, "c": 1.0}
    assert r["confusion"] == [[1, 0, 0], [2, 0, 0], [0, 0, 1]]
    expected_loss = -np.mean(np.log([0.7, 0.3, 0.6, 0.1]))
    assert r["loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert r["mean_class_accuracy"] == pytest.approx(2 / 3)
    assert "top-1 accuracy: 0.5000" in summary_lines(r)


def test_metrics_reject_bad_labels():
    m = ClassificationMetrics(3)
    with pytest.raises(ValueError, match="labels must be in"):
        m.add(torch.ones(1, 3) / 3, [3])
    with pytest.raises(ValueError, match="3 classes"):
        m.add(torch.ones(1, 4) / 4, [0])


def test_absent_classes_are_none_in_json(tmp_path):
    m = ClassificationMetrics(3)
    m.add(torch.eye(3)[:2], [0, 1])
    r = m.results()
    assert r["per_class"]["2"] is None
    path = write_results(r, str(tmp_path / "e.json"))
    assert json.load(open(path))["per_class"]["2"] is None


# ------------------------------------------------------------------------------ plots
def test_plots_from_metrics(tmp_path):
    w = JsonlWriter(str(tmp_path / "metrics.jsonl"))
    s = SmoothedLoss(5)
    for it in range(1, 31):
        loss = 3.0 / it
        w.write({"phase": "train", "iteration": it, "loss": loss, "smoothed_loss": s.add(loss),
                 "lr": 0.01 * 0.5 ** (it // 10), "accuracy": min(1, it / 30)})
        if it % 10 == 0:
            w.write({"phase": "test", "iteration": it, "top1": it / 40, "top5": it / 31, "loss": 1.0})
    w.close()
    paths = plot_run(str(tmp_path), confusion=np.eye(6) * 5 + 1, class_names=list("abcdef"))
    assert set(paths) == {"loss", "accuracy", "lr", "confusion"}
    for p in paths.values():
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    big = plot_confusion(np.random.RandomState(0).randint(0, 5, (101, 101)), str(tmp_path / "c101.png"),
                         [str(i) for i in range(101)])
    assert os.path.getsize(big) > 10000
