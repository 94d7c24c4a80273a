"""A resumed run continues the same run: the divergence guard's lr cut (and its quarantine and
recovery count) travel in the checkpoint, so the lr does not jump back to the config's after a
resume; Ctrl-C before the first update leaves nothing behind."""
import io
import os
import shutil

import pytest

from food101 import checkpoint as ckpt
from food101.train import fine_tune
from food101.train.loop import Trainer
from food101.train.metrics import read_jsonl
from tests.support import ZOO
from tests.support.damage import float_copy


@pytest.fixture(scope="module")
def lmdbs(tmp_path_factory):
    from food101.data import build_lmdb
    from food101.data.synthetic import make_demo_dataset
    root = tmp_path_factory.mktemp("resume")
    demo = make_demo_dataset(str(root / "food"), train_per_class=6, test_per_class=1, max_side=40)
    train = build_lmdb(demo.root, "train", str(root / "train"), size=36, workers=0,
                       progress=False).out
    nan = str(root / "nan")
    float_copy(train, nan, poison=[5])  # record 5: NaN pixels, in the second batch of 4
    return {"train": train, "nan": nan, "root": root}


def _values(lmdbs, out, **more):
    values = {"data.train_lmdb": lmdbs["nan"], "data.test_lmdb": "", "data.crop_size": 32,
              "data.batch_size": 4, "data.shuffle": False, "model.zoo_dir": ZOO,
              "solver.max_iter": 8, "solver.display": 1, "solver.test_interval": 0,
              "solver.snapshot": 4, "solver.random_seed": 5, "solver.lr_policy": "fixed",
              "solver.base_lr": 0.01, "train.output_dir": str(out), "train.progress": False,
              "train.plots": False, "train.export": False, "diagnostics.stats_interval": 0,
              "diagnostics.divergence_policy": "rollback", "diagnostics.good_state_interval": 1}
    values.update(more)
    return values


def _lrs(path):
    return {r["iteration"]: r["lr"] for r in read_jsonl(path) if r.get("phase") == "train"}


def test_the_guards_lr_cut_survives_a_resume(lmdbs, tmp_path):
    whole = fine_tune(overrides=_values(lmdbs, tmp_path / "whole"), stream=io.StringIO())
    assert whole["divergence_reports"], "the NaN record must make the guard roll back"
    lrs = _lrs(whole["metrics_path"])
    assert lrs[8] == pytest.approx(0.005)            # every base_lr multiplied by 0.5
    saved = ckpt.load_checkpoint(os.path.join(str(tmp_path / "whole"), "snapshots",
                                              "squeezenet_food101_iter_4.ckpt"))
    guard = saved["trainer"]["diagnostics"]["guard"]
    assert guard["lr_factor"] == 0.5 and guard["recoveries"] == 1 and guard["quarantined_keys"]
    # resume the copy of the run at its iteration-4 checkpoint: the same lr, the same losses
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "whole", copy)
    for name in os.listdir(copy / "snapshots"):
        if name.endswith("_iter_8.ckpt"):
            os.remove(copy / "snapshots" / name)
    resumed = fine_tune(resume=str(copy / "snapshots" / "squeezenet_food101_iter_4.ckpt"),
                        stream=io.StringIO())
    assert resumed["iteration"] == 8 and not resumed["divergence_reports"]
    again = _lrs(resumed["metrics_path"])
    assert [again[i] for i in range(5, 9)] == pytest.approx([lrs[i] for i in range(5, 9)])
    losses = {r["iteration"]: r["loss"] for r in read_jsonl(whole["metrics_path"])
              if r.get("phase") == "train"}
    after = {r["iteration"]: r["loss"] for r in read_jsonl(resumed["metrics_path"])
             if r.get("phase") == "train"}
    assert [after[i] for i in range(5, 9)] == pytest.approx([losses[i] for i in range(5, 9)],
                                                            rel=1e-5)


def test_the_lr_cut_survives_a_resume_without_the_guard(lmdbs, tmp_path):
    whole = fine_tune(overrides=_values(lmdbs, tmp_path / "run", **{"solver.max_iter": 4}),
                      stream=io.StringIO())
    assert _lrs(whole["metrics_path"])[4] == pytest.approx(0.005)
    resumed = fine_tune(resume=whole["checkpoint"], stream=io.StringIO(), overrides={
        "solver.max_iter": 6, "diagnostics.enabled": False})
    assert _lrs(resumed["metrics_path"])[6] == pytest.approx(0.005)
    # and its own checkpoint carries the cut on to the next resume
    saved = ckpt.load_checkpoint(resumed["checkpoint"])
    assert saved["trainer"]["diagnostics"]["guard"]["lr_factor"] == 0.5


def test_ctrl_c_before_the_first_update_leaves_nothing(lmdbs, tmp_path, monkeypatch):
    from food101.train.cli import INTERRUPTED_AT_START
    setup = Trainer.setup

    def setup_then_ctrl_c(self):
        setup(self)
        raise KeyboardInterrupt   # as a Ctrl-C lands while the nets are being created

    monkeypatch.setattr(Trainer, "setup", setup_then_ctrl_c)
    out = tmp_path / "never"
    result = fine_tune(overrides=_values(lmdbs, out, **{"data.train_lmdb": lmdbs["train"]}),
                       stream=io.StringIO())
    assert result["interrupted"] and result["checkpoint"] is None and result["iteration"] == 0
    assert not out.exists()                      # no half-written run folder
    assert "nothing was saved" in INTERRUPTED_AT_START


def test_the_train_tool_interrupted_at_start_exits_130_with_one_line(lmdbs, tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from tests.support import TOOLS
    out = tmp_path / "early"
    proc = subprocess.Popen(
        [sys.executable, os.path.join(TOOLS, "train.py"), "--train-lmdb", lmdbs["train"],
         "--zoo-dir", ZOO, "--output-dir", str(out), "--max-iter", "2", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)                              # while torch and the package load
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    if "before training started" in stderr:
        assert stderr.strip().splitlines()[-1] == ("interrupted before training started: "
                                                   "nothing was saved")
        assert not out.exists()
