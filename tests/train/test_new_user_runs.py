"""A new user's runs (#16 items 1, 2, 3, 5, 9): a poisoned LMDB under every divergence policy,
damaged LMDBs, --resume after any run, no silent overwrite, num_classes from the LMDB, the
statistics tables off the console. Tiny images (36 px records, 32 px crops), a few iterations."""
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from food101.train import TrainingError, fine_tune
from food101 import checkpoint as ckpt
from food101.train.loop import Trainer
from food101.train.metrics import read_jsonl
from tests.support import TOOLS, ZOO
from tests.support.damage import float_copy, truncated_copy


@pytest.fixture(scope="module")
def lmdbs(tmp_path_factory):
    from food101.data import build_lmdb
    from food101.data.synthetic import make_demo_dataset
    root = tmp_path_factory.mktemp("runs")
    demo = make_demo_dataset(str(root / "food"), train_per_class=6, test_per_class=2, max_side=48)
    out = {split: build_lmdb(demo.root, split, str(root / split), size=36, workers=0,
                             progress=False).out for split in ("train", "test")}
    out["nan"] = str(root / "nan")
    out["nan_keys"] = float_copy(out["train"], out["nan"], poison=[5, 20])
    out["root"] = root
    return out


def overrides(lmdbs, out, **more):
    values = {"data.train_lmdb": lmdbs["train"], "data.test_lmdb": lmdbs["test"],
              "data.crop_size": 32, "data.batch_size": 4, "data.test_batch_size": 16,
              "model.zoo_dir": ZOO, "solver.max_iter": 6, "solver.display": 2,
              "solver.test_interval": 0, "solver.snapshot": 3, "solver.random_seed": 5,
              "train.output_dir": str(out), "train.progress": False, "train.plots": False,
              "train.export": False, "diagnostics.stats_interval": 3}
    values.update(more)
    return values


def quiet(**kw):
    return fine_tune(stream=io.StringIO(), **kw)


def tool(*args):
    return subprocess.run([sys.executable, os.path.join(TOOLS, args[0])] + list(args[1:]),
                          capture_output=True, text=True, timeout=600)


# ---------------------------------------------------------------- item 1: a poisoned record
@pytest.mark.parametrize("policy", ["stop", "skip", "rollback"])
def test_poisoned_record_is_diagnosed_under_every_policy(lmdbs, tmp_path, policy):
    out = tmp_path / policy
    result = quiet(overrides=overrides(lmdbs, out, **{
        "data.train_lmdb": lmdbs["nan"], "data.shuffle": False, "solver.max_iter": 9,
        "diagnostics.divergence_policy": policy, "diagnostics.good_state_interval": 1}))
    reports = result["divergence_reports"]
    assert reports, "the NaN record must be caught"
    saved = json.load(open(reports[0]))          # whole, valid JSON
    poisoned = {k.decode() for k in lmdbs["nan_keys"]}
    assert {s["key"] for s in saved["suspects"]} <= poisoned and saved["suspects"]
    assert all(isinstance(k, str) and not k.startswith("b'") for k in saved["keys"])
    assert saved["action"] == policy
    assert os.path.exists(result["checkpoint"])
    records = read_jsonl(result["metrics_path"])
    assert any(r.get("kind") == "divergence" for r in records)
    if policy == "stop":
        assert result["stopped_by_guard"] and result["iteration"] == saved["iteration"] - 1
    else:      # recovered and finished the run, never training on a quarantined record again
        assert not result["stopped_by_guard"] and result["iteration"] == 9
        assert len(reports) <= 2
    shown = tool("inspect_training.py", str(out))
    assert shown.returncode == 0 and "Divergence at iteration %d" % saved["iteration"] in shown.stdout
    assert saved["suspects"][0]["key"] in shown.stdout


def test_the_train_tool_reports_a_guard_stop(lmdbs, tmp_path):
    result = tool("train.py", "--train-lmdb", lmdbs["nan"], "--test-lmdb", "", "--zoo-dir", ZOO,
                  "--output-dir", str(tmp_path / "run"), "--max-iter", "9", "--batch-size", "4",
                  "--set", "data.crop_size=32", "--set", "data.shuffle=false", "--set",
                  "diagnostics.divergence_policy=stop", "--set", "train.plots=false", "--set",
                  "train.export=false", "--no-progress")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "stopped early by the divergence guard" in result.stderr
    assert "divergence report:" in result.stdout


# ---------------------------------------------------------------- item 2: damaged LMDBs
def test_truncated_lmdb_is_a_clear_error_for_train_and_evaluate(lmdbs, tmp_path):
    bad = truncated_copy(lmdbs["train"], str(tmp_path / "cut"),
                         os.path.getsize(os.path.join(lmdbs["train"], "data.mdb")) // 2)
    out = tmp_path / "never"
    result = tool("train.py", "--train-lmdb", bad, "--zoo-dir", ZOO, "--output-dir", str(out),
                  "--max-iter", "2", "--no-progress")
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "data.mdb is truncated" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()                      # no empty run folder left behind
    from tests.support.deploy_folder import standin_deploy
    deploy = standin_deploy(str(tmp_path / "deploy"), crop=32, resize_size=36)
    result = tool("evaluate.py", deploy, bad, "--no-progress")
    assert result.returncode == 2 and "data.mdb is truncated" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- items 3, 5, 9: the run folder
@pytest.fixture(scope="module")
def first_run(lmdbs):
    out = lmdbs["root"] / "first"
    result = quiet(overrides=overrides(lmdbs, out))
    return out, result


def test_num_classes_defaults_to_the_lmdb(first_run):
    out, result = first_run
    cfg = ckpt.load_checkpoint(result["checkpoint"])["config"]
    assert cfg["model"]["num_classes"] == 6


def test_statistics_tables_stay_off_the_console(lmdbs, tmp_path):
    stream = io.StringIO()
    fine_tune(overrides=overrides(lmdbs, tmp_path / "quiet"), stream=stream)
    console = stream.getvalue()
    assert "Blob statistics at iteration 3:" in console and "table in train.log" in console
    assert "conv10_w " not in console                      # no table rows
    log = open(tmp_path / "quiet" / "train.log").read()
    assert "conv10_w " in log
    loud = io.StringIO()
    fine_tune(overrides=overrides(lmdbs, tmp_path / "loud", **{"train.verbose": True}), stream=loud)
    assert "conv10_w " in loud.getvalue()


def test_a_used_output_folder_is_refused_then_overwritten(lmdbs, first_run):
    out, result = first_run
    with pytest.raises(TrainingError, match="already holds a run.*--overwrite.*--resume"):
        quiet(overrides=overrides(lmdbs, out, **{"solver.max_iter": 4}))
    cli = tool("train.py", "--train-lmdb", lmdbs["train"], "--zoo-dir", ZOO, "--output-dir",
               str(out), "--max-iter", "2", "--no-progress")
    assert cli.returncode == 2 and "already holds a run" in cli.stderr
    copy = lmdbs["root"] / "overwritten"
    shutil.copytree(out, copy)
    again = quiet(overrides=overrides(lmdbs, copy, **{"solver.max_iter": 4, "solver.snapshot": 2,
                                                      "train.overwrite": True}))
    assert again["iteration"] == 4
    # the first run's iter_6 checkpoint is gone: --resume cannot pick a stale one
    assert ckpt.load_checkpoint(str(copy))["iteration"] == 4
    assert max(r.get("iteration") or 0 for r in read_jsonl(again["metrics_path"])) == 4


def test_resume_after_startup_findings_in_a_moved_folder(lmdbs, first_run):
    out, result = first_run
    records = read_jsonl(result["metrics_path"])
    assert any(r.get("iteration") is None for r in records)   # a start-up finding
    moved = lmdbs["root"] / "moved"
    shutil.copytree(out, moved)
    cli = tool("train.py", "--resume", str(moved / "snapshots" / "squeezenet_food101_iter_3.ckpt"),
               "--max-iter", "5", "--no-progress")
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert "outputs: %s" % moved in cli.stdout
    resumed = moved / "snapshots" / "squeezenet_food101_iter_5.ckpt"
    assert ckpt.load_checkpoint(str(resumed))["iteration"] == 5
    assert not (out / "snapshots" / "squeezenet_food101_iter_5.ckpt").exists()   # original untouched
    assert any(r.get("iteration") == 5 for r in read_jsonl(str(moved / "metrics.jsonl")))


def test_ctrl_c_says_which_iteration_was_saved(lmdbs, tmp_path, monkeypatch):
    step = Trainer.step

    def step_then_ctrl_c(self):
        step(self)
        if self.iteration == 2:      # between two updates, as a user's Ctrl-C mostly lands
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(Trainer, "step", step_then_ctrl_c)
    stream = io.StringIO()
    result = fine_tune(overrides=overrides(lmdbs, tmp_path / "ctrlc"), stream=stream)
    assert result["interrupted"] and result["iteration"] == 2
    assert ckpt.load_checkpoint(result["checkpoint"])["iteration"] == 2
    assert "stopping after iteration 2 " in stream.getvalue()
