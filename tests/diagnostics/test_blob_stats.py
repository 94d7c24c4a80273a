"""Per-blob statistics, the table, the metrics records and tools/inspect_training.py."""
import importlib.util
import json
import os

import numpy as np
import pytest
import torch

from food101.caffe2 import brew, model_helper, optimizer, workspace
from food101.diagnostics import Diagnostics, collect_stats, format_table, select_blobs, \
    tensor_stats
from food101.diagnostics.findings import Finding, FindingLog
from food101.train.metrics import JsonlWriter
from tests.support import REPO

TOOLS = os.path.join(REPO, "tools")


def test_tensor_stats_match_numpy():
    x = np.random.RandomState(0).randn(4, 3, 5, 5).astype(np.float32)
    x[0, 0, 0, :3] = 0
    s = tensor_stats(torch.from_numpy(x))
    assert s.min == pytest.approx(x.min()) and s.max == pytest.approx(x.max())
    assert s.mean == pytest.approx(x.mean(), abs=1e-6) and s.std == pytest.approx(x.std(), rel=1e-5)
    assert s.norm == pytest.approx(np.linalg.norm(x), rel=1e-5)
    assert s.zero_frac == pytest.approx(3 / x.size)
    assert (s.nan, s.inf, s.shape) == (0, 0, (4, 3, 5, 5))


def test_nan_and_inf_are_counted_and_do_not_hide_the_scale():
    x = torch.tensor([1.0, -2.0, float("nan"), float("inf"), 3.0])
    s = tensor_stats(x)
    assert (s.nan, s.inf) == (1, 1)
    assert (s.min, s.max) == (-2.0, 3.0)  # over the finite values
    assert s.mean == pytest.approx(2 / 3)
    assert json.loads(json.dumps(s.to_dict()))["nan"] == 1


def test_dead_relu_fraction_counts_channels_silent_for_the_whole_batch():
    x = torch.rand(6, 4, 3, 3)
    x[:, 1] = 0       # dead for every sample
    x[:3, 2] = 0      # only half the batch: alive
    s = tensor_stats(x, dead_channels=True)
    assert s.dead_frac == pytest.approx(0.25)


def test_collect_stats_skips_non_float_blobs_and_formats_a_table():
    blobs = {"w": torch.ones(2, 3), "label": torch.tensor([1, 2]), "iter": torch.tensor([5])}
    stats = collect_stats(blobs, {"w": "param"})
    assert list(stats) == ["w"]
    table = format_table(stats, "title")
    assert table.splitlines()[0] == "title"
    assert "w" in table and "2x3" in table and "param" in table


def small_training(tmp_path, iterations=4):
    model = model_helper.ModelHelper(name="stats")
    brew.conv(model, "data", "conv", 3, 4, kernel=3, pad=1)
    brew.relu(model, "conv", "conv")
    brew.fc(model, "conv", "fc", 4 * 6 * 6, 3)
    model.net.SoftmaxWithLoss(["fc", "label"], ["prob", "loss"])
    model.AddGradientOperators(["loss"])
    optimizer.build_sgd(model, base_learning_rate=0.01, policy="fixed", momentum=0.9)
    rng = np.random.RandomState(1)
    workspace.RunNetOnce(model.param_init_net)
    workspace.FeedBlob("data", rng.randn(5, 3, 6, 6).astype(np.float32))
    workspace.FeedBlob("label", rng.randint(0, 3, 5).astype(np.int32))
    workspace.CreateNet(model.net)
    writer = JsonlWriter(str(tmp_path / "metrics.jsonl"))
    lines = []
    diag = Diagnostics({"stats_interval": 2, "divergence_policy": "stop"}, num_classes=3,
                       log_lines=lambda *ls: lines.extend(ls), write_record=writer.write)
    diag.on_start(model.net, model.param_init_net, model.params, workspace)
    diag.add_findings([Finding("example", "warning", "a finding for the record")])
    writer.write(Finding("example2", "info", "written by hand").to_record())
    for it in range(1, iterations + 1):
        workspace.RunNet(model.net)
        diag.after_iteration(it, float(workspace.FetchBlob("loss")), workspace)
        record = diag.stats_record(it, workspace)
        if record:
            writer.write(record)
    writer.close()
    return model, diag, lines


def test_stats_records_cover_params_grads_and_activations_in_net_order(tmp_path):
    model, diag, lines = small_training(tmp_path)
    with open(tmp_path / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    stats = [r for r in rows if r.get("phase") == "stats"]
    assert [r["iteration"] for r in stats] == [1, 2, 4]
    blobs = stats[-1]["blobs"]
    assert list(blobs)[:2] == ["conv", "fc"]
    assert {n: blobs[n]["kind"] for n in ("conv", "conv_w", "conv_w_grad")} == \
        {"conv": "activation", "conv_w": "param", "conv_w_grad": "grad"}
    assert "dead_frac" in blobs["conv"]           # a ReLU output
    assert blobs["fc_w"]["update_ratio"] > 0      # measured between two iterations
    assert any(line.startswith("Blob statistics at iteration 4") for line in lines)
    selected = select_blobs(model.net, model.params, workspace.Blobs(), "grads")
    assert [n for n, _ in selected] == ["conv_w_grad", "conv_b_grad", "fc_w_grad", "fc_b_grad",
                                        "conv_grad", "fc_grad"]
    with pytest.raises(ValueError, match="unknown selection"):
        select_blobs(model.net, model.params, workspace.Blobs(), "weights")


def load_tool():
    spec = importlib.util.spec_from_file_location("inspect_training",
                                                  os.path.join(TOOLS, "inspect_training.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inspect_training_prints_the_table_and_plots_norms(tmp_path, capsys):
    small_training(tmp_path)
    tool = load_tool()
    png = tmp_path / "norms.png"
    assert tool.main([str(tmp_path), "--kind", "grad", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "Blob statistics at iteration 4" in out
    assert "conv_w_grad" in out and "fc_b_grad" in out
    assert "\nconv " not in out  # --kind grad keeps activations out of the table
    assert "[WARNING] example" in out
    assert png.exists() and png.stat().st_size > 1000
    assert tool.main([str(tmp_path / "metrics.jsonl"), "--iteration", "2", "--blobs", "^fc"]) == 0
    out = capsys.readouterr().out
    assert "iteration 2" in out and "fc_w" in out and "conv_w" not in out
    assert tool.main([str(tmp_path), "--iteration", "3"]) == 2
    assert "recorded at: 1, 2, 4" in capsys.readouterr().err


def test_finding_log_reports_each_problem_once():
    seen = []

    class Sink:
        def log(self, level, fmt, *args):
            seen.append(fmt % args)

    log = FindingLog(Sink())
    for _ in range(3):
        log.add(Finding("stuck", "warning", "same problem"))
    assert len(seen) == 1 and len(log.all) == 3 and log.codes() == ["stuck"]
