"""The run log in the model's own terms, each finding once: a Caffe run prints every loss top
with its weight and its test outputs under the net's Accuracy/loss names, as Caffe does; an ONNX
backbone's run names its classifier and its snapshots after the model."""
import io
import os
import re
import warnings

import pytest
import torch
import torch.nn as nn

from food101.train import config as C
from food101.train import fine_tune
from tests.train.test_caffe_solver import demo  # noqa: F401  (the module's LMDBs and net)


def test_caffe_run_prints_each_loss_and_the_nets_test_names_once(demo, monkeypatch):  # noqa: F811
    monkeypatch.chdir(demo)
    cfg = C.load_config(solver_path=str(demo / "caffe" / "solver.prototxt"))
    result = fine_tune(cfg, overrides={"train.output_dir": str(demo / "names"),
                                       "model.num_classes": 6, "solver.max_iter": 6,
                                       "solver.test_interval": 3, "train.progress": False,
                                       "train.plots": False, "train.export": False,
                                       "diagnostics.stats_interval": 0}, stream=io.StringIO())
    log = open(result["log_path"]).read()
    # Caffe lists a net's outputs by name, each loss with its loss_weight
    assert re.search(r"Train net output #0: accuracy = [\d.]+\n", log)
    assert re.search(r"Train net output #1: aux_loss = ([\d.]+) \(\* 0\.3 = [\d.]+ loss\)", log)
    assert re.search(r"Train net output #2: loss = [\d.]+ \(\* 1 = [\d.]+ loss\)", log)
    assert re.search(r"Test net output #0: accuracy = [\d.]+", log)
    assert re.search(r"Test net output #1: loss = [\d.]+", log)
    assert "top1 =" not in log and "top5 =" not in log   # the net has no top-5 Accuracy
    train = [r for r in __import__("food101.train.metrics", fromlist=["x"]).read_jsonl(
        result["metrics_path"]) if r.get("phase") == "train"]
    assert set(train[-1]["outputs"]) == {"accuracy", "aux_loss", "loss"}
    # one message per finding: the poly power 0.5 schedule, the stride-1 pool note
    assert len(re.findall(r"power[ =]0\.5", log)) == 1, [l for l in log.splitlines() if "0.5" in l]
    assert log.count("overlapping max pool") == 1
    assert os.path.exists(result["checkpoint"]) and os.path.basename(
        result["checkpoint"]).startswith("tiny_iter_")            # the solver's snapshot_prefix


def test_onnx_backbone_run_names_its_classifier_and_snapshots(demo, tmp_path):  # noqa: F811
    onnx_path = str(tmp_path / "mini_net.onnx")
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 10)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.randn(1, 3, 24, 24), onnx_path, dynamo=False)
    result = fine_tune(overrides={
        "data.train_lmdb": str(demo / "caffe" / "train_lmdb"), "data.test_lmdb": "",
        "data.crop_size": 24, "data.batch_size": 4, "model.zoo_dir": onnx_path,
        "solver.max_iter": 2, "solver.display": 1, "solver.test_interval": 0,
        "train.output_dir": str(tmp_path / "run"), "train.progress": False,
        "train.plots": False, "train.export": False, "diagnostics.stats_interval": 0},
        stream=io.StringIO())
    log = open(result["log_path"]).read()
    assert re.search(r"classifier \(FC \S+_w\) outputs 10 -> 6 \(the training set's classes\)", log)
    assert re.search(r"Trained: 2 params \(\S+_w, \S+_b\)", log)
    assert os.path.basename(result["checkpoint"]) == "mini_net_food101_iter_2.ckpt"
    saved = C.from_dict(__import__("food101.checkpoint", fromlist=["x"]).load_checkpoint(
        result["checkpoint"])["config"])
    assert saved.solver.snapshot_prefix == "snapshots/mini_net_food101"


def test_seed_bn_frozen_says_each_fork_field_and_the_batchnorm_finding_once(caplog):
    import logging
    from food101.caffe2.proto import caffe2_pb2
    from food101.train.loop import build_training_nets
    from food101.train.nets import TrainingError
    from tests.interop import caffe_fixtures as cf
    with caplog.at_level(logging.WARNING):
        cfg = C.load_config(solver_path=cf.net_path("seed_bn_frozen/solver.prototxt"), overrides={
            "model.caffe_net": cf.net_path("seed_bn_frozen/train_val.prototxt")})
        with pytest.raises(TrainingError) as e:
            build_training_nets(cfg, ["c%d" % i for i in range(10)], caffe2_pb2.DeviceOption())
    said = str(e.value) + "\n" + "\n".join(r.getMessage() for r in caplog.records)
    assert said.count("'res2_1a_1_bn' updates its running statistics") == 1, said
    for field in ("color", "contrast", "brightness"):
        assert said.count("field %r is not BVLC Caffe" % field) == 1, said
