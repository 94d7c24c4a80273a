"""End to end on the demo dataset, on the CPU: build LMDBs -> fine-tune the fixture zoo SqueezeNet
-> loss falls, accuracy above chance -> checkpoint -> Ctrl-C + resume equals one run -> evaluate
-> predict. Small images (64 px, 56 px crops) keep it to well under a minute on two cores."""
import json
import os
import re
import signal
import sys

import numpy as np
import pytest
import torch

from food101 import checkpoint as ckpt
from food101.train import config as C
from food101.train import fine_tune, schedule
from food101.caffe2.utils import ArgsToDict
from food101.inference.evaluate import evaluate_model
from food101.train.loop import Trainer
from food101.train.metrics import read_jsonl
from tests.support import REPO, ZOO

ROOT = REPO
sys.path.insert(0, os.path.join(ROOT, "tools"))
ZOO = ZOO
N = 48  # iterations before the interruption point; the reference run does 2N


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from food101.data.demo import make_demo_dataset
    from food101.data.writer import build_lmdb
    root = tmp_path_factory.mktemp("demo")
    dataset = make_demo_dataset(str(root / "food"), train_per_class=24, test_per_class=8,
                                max_side=96, seed=0)
    lmdbs = {}
    for split in ("train", "test"):
        lmdbs[split] = str(root / ("%s_lmdb" % split))
        build_lmdb(dataset.root, split, lmdbs[split], size=64, workers=0, progress=False)
    return {"root": root, "dataset": dataset, "train": lmdbs["train"], "test": lmdbs["test"]}


def demo_config(demo, output_dir, **overrides):
    values = {
        "data.train_lmdb": demo["train"], "data.test_lmdb": demo["test"],
        "data.crop_size": 56, "data.batch_size": 16, "data.test_batch_size": 48,
        "model.zoo_dir": ZOO, "model.num_classes": 6, "model.unfreeze_from": "conv1",
        "solver.base_lr": 0.0005, "solver.lr_policy": "step", "solver.stepsize": 80,
        "solver.gamma": 0.5, "solver.max_iter": 2 * N, "solver.display": 8,
        "solver.test_interval": N, "solver.snapshot": N, "solver.random_seed": 7,
        "train.output_dir": str(output_dir), "train.progress": False,
    }
    values.update(overrides)
    return C.load_config(overrides=values)


@pytest.fixture(scope="module")
def reference_run(demo):
    """The uninterrupted 2N-iteration run, with plots and the deploy export."""
    out = demo["root"] / "run_a"
    cfg = demo_config(demo, out)
    result = fine_tune(cfg, stream=open(os.devnull, "w"))
    return {"cfg": cfg, "result": result, "out": out}


def train_records(path):
    return [r for r in read_jsonl(path) if r["phase"] == "train"]


def test_training_learns(demo, reference_run):
    result = reference_run["result"]
    assert not result["interrupted"] and result["iteration"] == 2 * N
    losses = [r["loss"] for r in train_records(result["metrics_path"])]
    assert len(losses) == 2 * N
    assert np.mean(losses[-8:]) < np.mean(losses[:8])
    train_eval = evaluate_model(result["checkpoint"], demo["train"])
    print("train top-1 %.3f, test top-1 %.3f" % (train_eval["top1"], result["top1"]))
    assert train_eval["top1"] > 0.3, train_eval["top1"]   # chance is 1/6
    assert result["top1"] is not None and result["top5"] >= result["top1"]


def test_artefacts(reference_run):
    result, out = reference_run["result"], reference_run["out"]
    snapshots = out / "snapshots"
    names = sorted(os.listdir(snapshots))
    assert "config.yaml" in names                    # the effective config next to the checkpoints
    assert "squeezenet_food101_iter_%d.ckpt" % N in names
    assert "squeezenet_food101_iter_%d.ckpt" % (2 * N) in names
    assert "squeezenet_food101_best.ckpt" in names and result["best"]["top1"] is not None
    assert C.load_config(str(snapshots / "config.yaml")) == reference_run["cfg"]
    state = ckpt.load_checkpoint(str(snapshots))
    assert state["iteration"] == 2 * N
    for blob in ("conv10_w", "conv10_b", "conv10_w_momentum", "fire9/squeeze1x1_w_momentum",
                 "optimizer_iteration", "conv1_w"):
        assert blob in state["blobs"], blob
    assert int(state["blobs"]["optimizer_iteration"][0]) == 2 * N
    assert state["reader"]["position"] >= 0 and "augment" in state["rng"]["generators"]
    for name in ("loss", "accuracy", "lr", "confusion"):
        with open(result["plots"][name], "rb") as f:
            assert f.read(4) == b"\x89PNG"
    evaluation = json.load(open(result["eval_path"]))
    assert set(evaluation) >= {"top1", "top5", "per_class", "confusion"}
    assert len(evaluation["confusion"]) == 6 and sum(map(sum, evaluation["confusion"])) == 48
    for name in ("init_net.pb", "predict_net.pb", "labels.txt", "preprocess.json"):
        assert os.path.exists(os.path.join(result["deploy_dir"], name))
    log = open(result["log_path"]).read()
    assert re.search(r"Iteration %d, loss = [\d.]+, lr = [\d.e-]+" % 8, log)
    assert "Test net output #0: top1 = " in log
    record = train_records(result["metrics_path"])[0]
    assert set(record) >= {"iteration", "loss", "smoothed_loss", "lr", "accuracy", "images_per_s"}


def test_logged_lr_is_the_learning_rate_op_schedule(reference_run):
    records = train_records(reference_run["result"]["metrics_path"])
    expected = schedule.rates(reference_run["cfg"].solver)
    assert [r["lr"] for r in records] == [expected[r["iteration"]] for r in records]
    assert records[-1]["lr"] == pytest.approx(0.00025)   # stepped once, at 80


def test_ctrl_c_then_resume_equals_one_run(demo, reference_run, monkeypatch):
    """N iterations, Ctrl-C (a real SIGINT), resume, N more == 2N in one go, bit for bit."""
    out = demo["root"] / "run_b"
    cfg = demo_config(demo, out, **{"train.plots": False, "train.export": False})
    step = Trainer.step

    def step_then_ctrl_c(self):
        step(self)
        if self.iteration == N - 3:
            signal.raise_signal(signal.SIGINT)  # handled: stop after this iteration

    monkeypatch.setattr(Trainer, "step", step_then_ctrl_c)
    first = fine_tune(cfg, stream=open(os.devnull, "w"))
    monkeypatch.setattr(Trainer, "step", step)
    assert first["interrupted"] and first["iteration"] == N - 3
    assert first["checkpoint"].endswith("_iter_%d.ckpt" % (N - 3))
    second = fine_tune(resume=first["checkpoint"], overrides={"train.output_dir": str(out)},
                       stream=open(os.devnull, "w"))
    assert not second["interrupted"] and second["iteration"] == 2 * N

    a = ckpt.load_checkpoint(reference_run["result"]["checkpoint"])
    b = ckpt.load_checkpoint(second["checkpoint"])
    assert sorted(a["blobs"]) == sorted(b["blobs"])
    for name, value in a["blobs"].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, b["blobs"][name]), name
    assert a["reader"] == dict(b["reader"], path=a["reader"]["path"])
    ra = train_records(reference_run["result"]["metrics_path"])
    rb = train_records(second["metrics_path"])
    strip = lambda rs: [{k: v for k, v in r.items() if k != "images_per_s"} for r in rs]  # noqa: E731
    assert strip(ra) == strip(rb)
    assert second["top1"] == reference_run["result"]["top1"]


def test_evaluate_and_predict_tools(demo, reference_run, capsys):
    import evaluate as evaluate_tool
    import predict as predict_tool
    result = reference_run["result"]
    out_dir = str(demo["root"] / "eval")
    from food101.train.cli import evaluate_main
    code = evaluate_main(evaluate_tool.get_args_parser().parse_args(
        [result["deploy_dir"], demo["test"], "--out-dir", out_dir, "--no-progress"]))
    text = capsys.readouterr().out
    assert code == 0 and "top-1 accuracy: %.4f" % result["top1"] in text
    deployed = json.load(open(os.path.join(out_dir, "eval.json")))
    from_checkpoint = evaluate_model(result["checkpoint"], demo["test"])
    assert deployed["confusion"] == from_checkpoint["confusion"]
    assert os.path.getsize(os.path.join(out_dir, "confusion.png")) > 1000

    images = sorted(os.path.join(demo["dataset"].root, "images", "pizza", f)
                    for f in os.listdir(os.path.join(demo["dataset"].root, "images", "pizza")))[:2]
    from food101.train.cli import predict_main
    code = predict_main(predict_tool.get_args_parser().parse_args(["--model", result["deploy_dir"]] + images))
    text = capsys.readouterr().out
    assert code == 0
    lines = text.splitlines()
    assert lines[0] == images[0] and len(lines) == 12
    probabilities = [float(re.search(r"([\d.]+)%$", l).group(1)) for l in lines[1:6]]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 100.01
    names = {re.match(r"\s+\d\. (\S+)", l).group(1) for l in lines[1:6]}
    assert names <= set(demo["dataset"].classes)


def test_gradient_accumulation_equals_a_bigger_batch(demo):
    """iter_size 2 x batch 8 == batch 16 when nothing random differs (no crop, mirror, dropout)."""
    finals = []
    for batch, iter_size in ((16, 1), (8, 2)):
        out = demo["root"] / ("acc_%d" % iter_size)
        cfg = demo_config(demo, out, **{
            "data.batch_size": batch, "solver.iter_size": iter_size, "data.crop_size": 64,
            "data.mirror": False, "model.train_dropout": False, "solver.max_iter": 3,
            "solver.test_interval": 0, "data.test_lmdb": "", "train.plots": False,
            "train.export": False, "solver.snapshot": 0})
        result = fine_tune(cfg, stream=open(os.devnull, "w"))
        finals.append(ckpt.load_checkpoint(result["checkpoint"])["blobs"])
    for name in ("conv10_w", "conv10_b", "fire9/expand3x3_w", "conv10_w_momentum"):
        torch.testing.assert_close(finals[0][name], finals[1][name], rtol=1e-4, atol=1e-6)


def test_bf16_autocast_runs_on_cpu(demo):
    cfg = demo_config(demo, demo["root"] / "bf16", **{
        "train.bf16": True, "solver.max_iter": 2, "solver.test_interval": 0, "data.test_lmdb": "",
        "train.plots": False, "train.export": False, "solver.snapshot": 0})
    result = fine_tune(cfg, stream=open(os.devnull, "w"))
    state = ckpt.load_checkpoint(result["checkpoint"])
    assert state["blobs"]["conv10_w"].dtype == torch.float32       # fp32 master weights
    assert np.isfinite(result["final_loss"])


def test_gpu_flag_without_cuda_is_a_clear_error(demo, capsys, monkeypatch):
    import train as train_tool
    from food101.train.cli import train_main
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = train_tool.get_args_parser().parse_args(["--gpu", "--train-lmdb", demo["train"]])
    assert train_main(args) == 2
    err = capsys.readouterr().err
    assert "--gpu was given but no CUDA GPU is available" in err


def test_train_tool_print_config(capsys, tmp_path):
    import train as train_tool
    from food101.train.cli import train_main
    solver = tmp_path / "s.prototxt"
    solver.write_text("base_lr: 0.5\nmax_iter: 7\n")
    args = train_tool.get_args_parser().parse_args(
        ["--solver", str(solver), "--set", "solver.max_iter=9", "--batch-size", "4", "--print-config"])
    assert train_main(args) == 0
    text = capsys.readouterr().out
    assert "  base_lr: 0.5" in text and "  max_iter: 9" in text and "  batch_size: 4" in text


def test_lr_multipliers_give_their_own_learning_rate_ops(demo):
    from food101.caffe2 import core
    from food101.train.loop import own_workspace
    from food101.train.nets import build_training_nets
    cfg = demo_config(demo, demo["root"] / "mult", **{"model.backbone_lr_mult": 0.25,
                                                       "model.unfreeze_from": "fire9"})
    with own_workspace():
        nets = build_training_nets(cfg, list(demo["dataset"].classes), core.DeviceOption(0))
    rates = {}
    for op in nets.update.op:
        if op.type == "LearningRate":
            rates[op.output[0]] = ArgsToDict(op.arg)["base_lr"]
    assert sorted(rates.values()) == pytest.approx([0.0005 * 0.25, 0.0005])
    assert rates[nets.lr_blob] == pytest.approx(0.0005) and nets.lr_scale == 1.0
    updated = {op.input[3] for op in nets.update.op if op.type == "MomentumSGDUpdate"}
    assert updated == set(nets.params) and "conv10_w" in updated and "fire9/expand1x1_w" in updated
    assert "conv1_w" not in updated and "conv1_w" in nets.frozen_blobs


def test_ctrl_c_in_the_train_tool_saves_and_exits_130(demo, tmp_path):
    """The real script, a real SIGINT: a checkpoint, a resume hint, exit status 130."""
    import subprocess
    import threading
    out = tmp_path / "cli"
    cmd = [sys.executable, os.path.join(ROOT, "tools", "train.py"), "--cpu", "--no-progress",
           "--train-lmdb", demo["train"], "--zoo-dir", ZOO, "--output-dir", str(out),
           "--max-iter", "100000", "--batch-size", "8", "--seed", "3",
           "--set", "model.num_classes=6", "--set", "data.crop_size=56", "--set", "solver.display=2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    watchdog = threading.Timer(180, proc.kill)  # a silent hang must not hang the test suite
    watchdog.start()
    try:
        for line in proc.stdout:
            if line.startswith("Iteration 4,"):
                break
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Resume with: python tools/train.py --resume" in stdout
    path = ckpt.latest_checkpoint(str(out))
    assert path is not None and ckpt.load_checkpoint(path)["iteration"] >= 4
    assert "interrupted: checkpoint" in stderr
