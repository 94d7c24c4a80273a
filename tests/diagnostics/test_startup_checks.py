"""The data checks (label range, input scale) and a quiet start on the real fine-tune net."""
import os

import numpy as np
import pytest

from food101 import zoo
from food101.caffe2 import model_helper, optimizer, workspace
from food101.diagnostics import ERROR, WARNING, Diagnostics, stories
from tests.support import ZOO

ZOO = ZOO


def tiny(num_classes=4):
    model = model_helper.ModelHelper(name="checks")
    features = stories.add_backbone(model, "data", depth=2, width=8, trainable=False)
    loss = stories.add_classifier(model, features, 8 * 8 * 8, num_classes)
    model.AddGradientOperators([loss])
    optimizer.build_sgd(model, base_learning_rate=0.01, policy="fixed", momentum=0.9)
    weights = stories.tiny_zoo_weights(depth=2, width=8)
    workspace.RunNetOnce(model.param_init_net)
    for name, value in weights.items():
        if not name.startswith("pred"):
            workspace.FeedBlob(name, value)
    return model, weights


def start(model, weights, **settings):
    diag = Diagnostics(dict({"divergence_policy": "stop", "stats_interval": 0}, **settings),
                       num_classes=4)
    diag.on_start(model.net, model.param_init_net, model.params, workspace, zoo_model=weights)
    return diag


def test_labels_outside_the_classes_are_named_with_their_keys():
    model, weights = tiny()
    diag = start(model, weights)
    images, _ = stories.colour_batches(1, batch_size=4)[0]
    diag.on_batch(1, images, np.array([0, 3, 4, -1], np.int32), ["k0", "k1", "k2", "k3"])
    (finding,) = [f for f in diag.findings if f.code == "label_range"]
    assert finding.severity == ERROR
    assert "labels outside [0, 4)" in finding.message and "from -1 to 4" in finding.message
    assert "keys k2, k3" in finding.message


def test_unit_scaled_data_for_a_zoo_model_is_flagged():
    model, weights = tiny()
    diag = start(model, weights)
    images, labels = stories.colour_batches(1, batch_size=4, scale="unit")[0]
    diag.on_batch(1, images, labels)
    workspace.FeedBlob("data", images)
    workspace.FeedBlob("label", labels)
    workspace.CreateNet(model.net)
    workspace.RunNet(model.net)
    diag.after_iteration(1, float(workspace.FetchBlob("loss")), workspace)
    scale = [f for f in diag.findings if f.code == "input_scale"]
    assert scale and scale[0].severity == WARNING
    assert "[0, 1]" in scale[0].message and "mean" in scale[0].message
    assert any("the first Conv reads 'data'" in f.message for f in scale)


def test_properly_scaled_data_is_quiet():
    model, weights = tiny()
    diag = start(model, weights)
    images, labels = stories.colour_batches(1, batch_size=4, scale="zoo")[0]
    diag.on_batch(1, images, labels, ["a", "b", "c", "d"])
    workspace.FeedBlob("data", images)
    workspace.FeedBlob("label", labels)
    workspace.CreateNet(model.net)
    workspace.RunNet(model.net)
    diag.after_iteration(1, float(workspace.FetchBlob("loss")), workspace)
    assert [str(f) for f in diag.findings if f.severity != "info"] == []


def test_a_saturated_loss_points_at_the_learning_rate():
    from food101.diagnostics import HealthMonitor
    model, weights = tiny()
    monitor = HealthMonitor(model.net, model.params, {"health_interval": 0}, num_classes=4)
    found = []
    for it in range(1, 31):
        found += monitor.after_iteration(it, 45.0 + (it % 3), workspace)
    (saturated,) = [f for f in found if f.code == "loss_saturated"]
    assert "46.05" in saturated.message and "learning rate is far too high" in saturated.message


@pytest.fixture(scope="module")
def squeezenet():
    return zoo.load(ZOO)


def test_the_project_fine_tune_net_starts_quiet(squeezenet):
    """SqueezeNet (stand-in weights) re-headed to 101 classes, backbone frozen: a new conv10 of
    another shape is no re-initialisation, and nothing frozen moves."""
    model = zoo.build_finetune_model(squeezenet, num_classes=101)
    zoo.build_finetune_sgd(model, 0.01, policy="step", stepsize=100, gamma=0.1, momentum=0.9)
    workspace.RunNetOnce(model.param_init_net)
    rs = np.random.RandomState(0)
    data = rs.randint(0, 256, (2, 3, 64, 64)).astype(np.uint8)
    labels = rs.randint(0, 101, 2).astype(np.int32)
    workspace.FeedBlob(model.finetune.input_blob, data)
    workspace.FeedBlob("label", labels)
    workspace.CreateNet(model.net)
    diag = Diagnostics({"divergence_policy": "stop", "stats_interval": 2, "health_interval": 1},
                       num_classes=101, max_iter=1000)
    found = diag.on_start(model.net, model.param_init_net, model.params, workspace,
                          zoo_model=squeezenet, frozen_blobs=model.finetune.frozen_blobs)
    assert [str(f) for f in found if f.severity != "info"] == []
    for it in (1, 2):
        diag.on_batch(it, data, labels, ["a", "b"])
        workspace.RunNet(model.net)
        diag.after_iteration(it, float(workspace.FetchBlob("loss")), workspace)
        diag.stats_record(it, workspace)
    assert [str(f) for f in diag.findings if f.severity != "info"] == []
    assert "conv10_w" in diag.last_stats and "fire9/concat" in diag.last_stats
