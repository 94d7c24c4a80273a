"""A Caffe solver run follows Caffe's iteration numbering: update k uses the policy at k - 1
(Caffe's SGDSolver computes the rate from iter_ before incrementing it), while the Caffe2 API and
the project's own configs keep Caffe2's (update k reads k: its Iter op runs first). Checked
against a numpy transcription of Caffe's SGDSolver::GetLearningRate for every Caffe policy; a run
whose last update had lr 0, or that changed no weight, says so."""
import io
import math
import os
import sys

import numpy as np
import pytest

from food101.train import config as C
from food101.train import schedule
from tests.interop import caffe_fixtures as cf
from tests.support import TOOLS

sys.path.insert(0, TOOLS)


def caffe_get_learning_rate(p, it):
    """SGDSolver<Dtype>::GetLearningRate (BVLC caffe/src/caffe/solvers/sgd_solver.cpp), in
    numpy, at Caffe's iter_ = `it`."""
    policy = p["lr_policy"]
    if policy == "fixed":
        rate = p["base_lr"]
    elif policy == "step":
        rate = p["base_lr"] * np.power(p["gamma"], it // p["stepsize"])
    elif policy == "exp":
        rate = p["base_lr"] * np.power(p["gamma"], it)
    elif policy == "inv":
        rate = p["base_lr"] * np.power(1 + p["gamma"] * it, -p["power"])
    elif policy == "multistep":
        current_step = 0
        while current_step < len(p["stepvalue"]) and it >= p["stepvalue"][current_step]:
            current_step += 1
        rate = p["base_lr"] * np.power(p["gamma"], current_step)
    elif policy == "poly":
        rate = p["base_lr"] * np.power(1.0 - float(it) / p["max_iter"], p["power"])
    elif policy == "sigmoid":
        rate = p["base_lr"] * (1.0 / (1.0 + np.exp(-p["gamma"] * (it - p["stepsize"]))))
    else:
        raise ValueError(policy)
    return float(rate)


POLICIES = {
    "fixed": {},
    "step": {"gamma": 0.5, "stepsize": 3},
    "multistep": {"gamma": 0.1, "stepvalue": [2, 5, 9]},
    "exp": {"gamma": 0.9},
    "inv": {"gamma": 0.1, "power": 0.75},
    "poly": {"power": 0.5},
    "sigmoid": {"gamma": -0.5, "stepsize": 6},
}


def _solver_text(policy, extra, max_iter=12, base_lr=0.04):
    lines = ['base_lr: %g' % base_lr, 'lr_policy: "%s"' % policy, "max_iter: %d" % max_iter]
    for key, value in extra.items():
        for v in value if isinstance(value, list) else [value]:
            lines.append("%s: %s" % (key, v))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_solver_rates_follow_caffe_get_learning_rate(policy, tmp_path):
    path = tmp_path / "solver.prototxt"
    path.write_text(_solver_text(policy, POLICIES[policy]))
    solver = C.load_config(solver_path=str(path)).solver
    assert solver.lr_numbering == "caffe"
    params = dict(POLICIES[policy], lr_policy=policy, base_lr=0.04, max_iter=12)
    rates = schedule.rates(solver)
    expected = {k: caffe_get_learning_rate(params, k - 1) for k in range(1, 13)}
    assert sorted(rates) == sorted(expected)
    for k in rates:
        assert rates[k] == pytest.approx(expected[k], rel=2e-6, abs=1e-9), (k, rates, expected)
    # the same schedule from a YAML/--set config keeps Caffe2's numbering: update k reads k
    caffe2 = C.merge(C.load_config(solver_path=str(path)), {"solver.lr_numbering": "caffe2"})
    shifted = schedule.rates(caffe2.solver, range(1, 12))
    for k in shifted:
        assert shifted[k] == pytest.approx(expected[k + 1], rel=2e-6, abs=1e-9)


def test_lr_schedule_tool_prints_caffe_numbering_for_a_solver(capsys):
    import lr_schedule
    assert lr_schedule.main(["--solver", cf.net_path("squeezenet_v1.1/solver.prototxt"), "--max-iter", "3"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [(int(i), float(r)) for i, r in rows] == [(1, 0.04), (2, pytest.approx(0.0266667)),
                                                    (3, pytest.approx(0.0133333))]
    assert "Caffe's SGDSolver" in out


# ------------------------------------------------------------------ the trainer
@pytest.fixture(scope="module")
def lmdbs(tmp_path_factory):
    from food101.data import build_lmdb
    from food101.data.synthetic import make_demo_dataset
    root = tmp_path_factory.mktemp("numbering")
    demo = make_demo_dataset(str(root / "food"), train_per_class=4, test_per_class=1, max_side=40)
    return {"train": build_lmdb(demo.root, "train", str(root / "train"), size=36, workers=0,
                                progress=False).out, "root": root}


def _run(lmdbs, out, solver_text=None, **more):
    from food101.train import fine_tune
    from tests.support import ZOO
    values = {"data.train_lmdb": lmdbs["train"], "data.test_lmdb": "", "data.crop_size": 32,
              "data.batch_size": 4, "model.zoo_dir": ZOO, "solver.display": 1,
              "solver.test_interval": 0, "solver.snapshot": 0, "solver.random_seed": 3,
              "solver.iter_size": 1, "train.output_dir": str(out), "train.progress": False,
              "train.plots": False, "train.export": False, "diagnostics.stats_interval": 0}
    values.update(more)
    cfg = None
    if solver_text is not None:
        (lmdbs["root"] / "solver.prototxt").write_text(solver_text)
        cfg = C.load_config(solver_path=str(lmdbs["root"] / "solver.prototxt"))
    return fine_tune(cfg, overrides=values, stream=io.StringIO())


def _train_lrs(result):
    from food101.train.metrics import read_jsonl
    return [r["lr"] for r in read_jsonl(result["metrics_path"]) if r.get("phase") == "train"]


def test_a_solver_run_trains_with_caffe_step_boundaries(lmdbs, tmp_path):
    result = _run(lmdbs, tmp_path / "step", _solver_text("step", {"gamma": 0.5, "stepsize": 2},
                                                         max_iter=5, base_lr=0.01))
    # Caffe: updates 1-2 use iter_ 0-1 (0.01), 3-4 use 2-3 (0.005), 5 uses 4 (0.0025)
    assert _train_lrs(result) == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025])
    assert result["warnings"] == []


def test_a_one_update_poly_solver_run_changes_the_weights(lmdbs, tmp_path):
    result = _run(lmdbs, tmp_path / "poly1", _solver_text("poly", {"power": 1}, max_iter=1))
    assert _train_lrs(result) == pytest.approx([0.04])  # Caffe: iter_ 0, the full base_lr
    assert result["warnings"] == []


def test_a_run_that_changes_nothing_is_not_plain_success(lmdbs, tmp_path, capsys):
    # Caffe2's numbering (the project's own config): poly's only update has lr 0
    result = _run(lmdbs, tmp_path / "poly_c2", **{"solver.lr_policy": "poly", "solver.power": 1.0,
                                                   "solver.max_iter": 1, "solver.base_lr": 0.04})
    assert _train_lrs(result) == [0.0]
    text = "\n".join(result["warnings"])
    assert "last_update_lr_zero" in text and "changed no weight" in text
    assert "solver.lr_numbering=caffe" in text
    assert "no_param_changed" in text and "no trained parameter changed" in text
    log = open(result["log_path"]).read()
    assert "no trained parameter changed in this run" in log


def test_the_train_tool_prints_the_warning(lmdbs, tmp_path):
    import subprocess
    from tests.support import ZOO
    cli = subprocess.run(
        [sys.executable, os.path.join(TOOLS, "train.py"), "--train-lmdb", lmdbs["train"],
         "--zoo-dir", ZOO, "--output-dir", str(tmp_path / "cli"), "--max-iter", "1",
         "--batch-size", "4", "--set", "data.crop_size=32", "--set", "solver.lr_policy=poly",
         "--set", "solver.power=1", "--set", "train.plots=false", "--set", "train.export=false",
         "--set", "diagnostics.stats_interval=0", "--no-progress"],
        capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert "warning: [WARNING] no_param_changed" in cli.stderr


def test_caffe2_api_numbering_is_unchanged():
    """build_sgd's Iter runs before LearningRate: the first update reads iteration 1."""
    from food101.caffe2 import brew, model_helper, optimizer, workspace
    workspace.ResetWorkspace()
    model = model_helper.ModelHelper(name="n")
    fc = brew.fc(model, "x", "y", 2, 2)
    loss = model.net.AveragedLoss(model.net.SquaredL2Distance([fc, "t"], "d"), "loss")
    model.AddGradientOperators([loss])
    optimizer.build_sgd(model, 0.1, policy="step", stepsize=1, gamma=0.5)
    workspace.FeedBlob("x", np.ones((1, 2), np.float32))
    workspace.FeedBlob("t", np.ones((1, 2), np.float32))
    workspace.RunNetOnce(model.param_init_net)
    workspace.CreateNet(model.net)
    workspace.RunNet(model.net.Proto().name)
    lr = [b for b in workspace.Blobs() if b.endswith("_lr_cpu")][0]
    assert abs(float(workspace.FetchBlob(lr)[0])) == pytest.approx(0.05)
    assert math.isfinite(float(workspace.FetchBlob("loss")))
