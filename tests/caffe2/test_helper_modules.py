"""net_drawer, visualize, memonger, experiment_util: the modules Caffe2 scripts import besides
the core API (semantics read from caffe2.python of torch 1.4.0)."""
import os
import shutil

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from food101.caffe2 import brew, core, experiment_util, memonger, model_helper, net_drawer, visualize, workspace  # noqa: E402


def _small_net():
    net = core.Net("drawn")
    net.FC(["x", "w", "b"], "y")
    net.Relu("y", "y")                       # in place: a second version of y
    net.Sum(["y", "x2"], "z")
    return net


def test_pydot_graph_versions_in_place_blobs():
    graph = net_drawer.GetPydotGraph(_small_net(), rankdir="TB")
    names = {n.get_name().strip('"') for n in graph.get_nodes()}
    assert {"FC (op#0)", "Relu (op#1)", "Sum (op#2)", "y0", "y1", "z0"} <= names
    edges = {(e.get_source().strip('"'), e.get_destination().strip('"')) for e in graph.get_edges()}
    assert ("y0", "Relu (op#1)") in edges and ("Relu (op#1)", "y1") in edges
    assert ("y1", "Sum (op#2)") in edges
    assert graph.get_rankdir() == "TB"


def test_pydot_graph_minimal_dependency():
    net = core.Net("minimal")
    net.Relu("a", "b")
    net.Relu("b", "c")
    net.Sum(["b", "c"], "d")           # b's producer is implied through c's
    full = net_drawer.GetPydotGraphMinimal(net)
    minimal = net_drawer.GetPydotGraphMinimal(net, minimal_dependency=True)
    assert len(full.get_edges()) == 3 and len(minimal.get_edges()) == 2


def test_model_helper_is_drawable_and_missing_graphviz_is_explained(monkeypatch):
    model = model_helper.ModelHelper(name="m")
    brew.fc(model, "data", "fc", 4, 2)
    graph = net_drawer.GetPydotGraph(model, rankdir="LR")
    assert "FC (op#0)" in graph.to_string()
    monkeypatch.setattr(shutil, "which", lambda program: None)
    with pytest.raises(net_drawer.GraphvizMissingError, match="Install Graphviz"):
        graph.create_png()
    assert net_drawer.GetGraphPngSafe(net_drawer.GetPydotGraph, model).startswith(b"\x89PNG")


def test_visualize_grids_nchw_and_nhwc():
    images = np.arange(5 * 3 * 4 * 2, dtype=np.float64).reshape(5, 3, 4, 2)     # N C H W
    grid = visualize.PatchVisualizer(gap=1).ShowMultiple(visualize.ChannelLast(images))
    assert grid.shape == (2 * 5 - 1, 3 * 3 - 1, 3)       # 3 columns, 2 rows, colour
    np.testing.assert_array_equal(grid[5:9, 3:5], images[4].transpose(1, 2, 0))
    assert grid[4, 0, 0] == images.mean()                # the gap: the mean
    gray = visualize.PatchVisualizer().ShowMultiple(np.ones((4, 16)), ncols=4)   # flat 4x4 patches
    assert gray.shape == (4, 4 * 5 - 1)
    visualize.NCHW.ShowMultiple(images)                  # module functions draw, return nothing
    with pytest.raises(ValueError, match="neither n\\*n nor n\\*n\\*3"):
        visualize.PatchVisualizer().ShowSingle(np.ones(7))


def test_memonger_returns_an_equivalent_net():
    model = model_helper.ModelHelper(name="mem")
    fc = brew.fc(model, "data", "fc", 4, 3)
    loss = model.AveragedLoss(model.SquaredL2Distance([fc, "target"], "dist"), "loss")
    grads = model.AddGradientOperators([loss])
    shared = memonger.share_grad_blobs(model.net, [loss], [grads["fc_w"]], "")
    assert memonger.verify_graph_equality(model.net.Proto(), shared)
    assert memonger.verify_inplace_blobs(model.net.Proto(), shared)
    optimized = memonger.optimize_interference(model.net.Proto(), ["data"])
    assert optimized.net == model.net.Proto() and optimized.blob_assignments == {}
    renamed = core.Net("renamed")
    renamed.FC(["data", "fc_w", "fc_b"], "other")        # a different data flow is caught
    renamed.SquaredL2Distance(["data", "target"], "dist")
    assert not memonger.verify_graph_equality(model.net.Proto(), renamed.Proto())
    workspace.FeedBlob("data", np.ones((2, 4), np.float32))
    workspace.FeedBlob("target", np.zeros((2, 3), np.float32))
    workspace.RunNetOnce(model.param_init_net)
    workspace.RunNetOnce(shared)
    assert np.isfinite(workspace.FetchBlob("fc_w_grad")).all()


def test_model_trainer_log_writes_caffe2s_csv(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    class Sink(experiment_util.ExternalLogger):
        def __init__(self):
            self.records, self.args = [], None

        def set_runtime_args(self, runtime_args):
            self.args = runtime_args

        def log(self, log_dict):
            self.records.append(dict(log_dict))

    sink = Sink()
    log = experiment_util.ModelTrainerLog("exp", {"lr": 0.1}, external_loggers=[sink])
    log.log(input_count=64, batch_count=1, additional_values={"loss": 2.5, "accuracy": 0.1})
    log.log(input_count=128, batch_count=2, additional_values={"loss": 2.0, "accuracy": 0.2})
    with open(os.path.join(tmp_path, log.filename)) as fh:
        lines = fh.read().splitlines()
    assert lines[0] == "# {'lr': 0.1}"
    assert lines[1] == ("time_spent,cumulative_time_spent,input_count,cumulative_input_count,"
                        "cumulative_batch_count,inputs_per_sec,accuracy,loss")
    assert lines[3].split(",")[2:5] == ["64", "128", "2"] and lines[3].endswith(",0.2,2.0")
    assert sink.args["experiment_id"] == log.experiment_id and len(sink.records) == 2
