"""Story 1: "SqueezeNet on Food-101 with every weight re-initialised by Xavier: accuracy stays
near chance for thousands of iterations; gradient mean ~1e-6 in conv1."

Small scale: a 20-layer conv backbone whose "pretrained" weights (stories.tiny_zoo_weights) make
the task easy. Fine-tuned properly (zoo weights loaded after the param_init_net, backbone frozen)
the loss leaves chance within a few iterations and the diagnostics stay quiet. Built with
brew.conv and the zoo weights fed *before* the param_init_net runs, every layer is re-drawn
by XavierFill: the diagnostics must name the overwrite at start-up and, as the loss sits at
ln(C), say it is stuck at chance, with the vanishing updates as evidence.
"""
import math

import numpy as np
import pytest
import torch

from food101.caffe2 import model_helper, optimizer, workspace
from food101.diagnostics import ERROR, WARNING, Diagnostics, stories

DEPTH, WIDTH, CLASSES, ITERS = 20, 8, 6, 60
SETTINGS = {"chance_patience": 30, "health_interval": 10, "stats_interval": 20,
            "divergence_policy": "stop"}


@pytest.fixture(autouse=True)
def one_thread():
    # tiny tensors: thread hand-offs cost more than they save on a 2-core machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fine_tune(reinit):
    zoo = stories.tiny_zoo_weights(depth=DEPTH, width=WIDTH)
    backbone = {k: v for k, v in zoo.items() if not k.startswith("pred")}
    model = model_helper.ModelHelper(name="story1_%s" % ("reinit" if reinit else "ok"))
    features = stories.add_backbone(model, "data", depth=DEPTH, width=WIDTH, trainable=reinit)
    loss = stories.add_classifier(model, features, WIDTH * 8 * 8, CLASSES)
    model.AddGradientOperators([loss])
    optimizer.build_sgd(model, base_learning_rate=0.01, policy="fixed", momentum=0.9)
    if reinit:  # the mistake: zoo weights first, then the param_init_net re-draws them all
        for name, value in backbone.items():
            workspace.FeedBlob(name, value)
        workspace.RunNetOnce(model.param_init_net)
    else:
        workspace.RunNetOnce(model.param_init_net)
        for name, value in backbone.items():
            workspace.FeedBlob(name, value)
    batches = stories.colour_batches(ITERS, batch_size=8, num_classes=CLASSES, image=8)
    workspace.FeedBlob("data", batches[0][0])
    workspace.FeedBlob("label", batches[0][1])
    workspace.CreateNet(model.net)

    lines = []
    diag = Diagnostics(SETTINGS, num_classes=CLASSES, max_iter=ITERS,
                       log_lines=lambda *ls: lines.extend(ls))
    start = diag.on_start(model.net, model.param_init_net, model.params, workspace, zoo_model=zoo)
    losses, records = [], []
    for it, (images, labels) in enumerate(batches, start=1):
        keys = ["%08d" % (8 * (it - 1) + i) for i in range(len(labels))]
        assert diag.on_batch(it, images, labels, keys) == "continue"
        workspace.FeedBlob("data", images)
        workspace.FeedBlob("label", labels)
        workspace.RunNet(model.net)
        losses.append(float(workspace.FetchBlob("loss")))
        assert diag.after_iteration(it, losses[-1], workspace) == "continue"
        record = diag.stats_record(it, workspace)
        if record:
            records.append(record)
    return diag, start, losses, records, lines


def test_healthy_fine_tune_leaves_chance_and_stays_quiet():
    diag, start, losses, records, lines = fine_tune(reinit=False)
    assert np.mean(losses[-10:]) < 0.5 * math.log(CLASSES)
    loud = [str(f) for f in diag.findings if f.severity in (WARNING, ERROR)]
    assert loud == []
    assert [r["iteration"] for r in records] == [1, 20, 40, 60]
    assert any(line.startswith("Blob statistics at iteration 20") for line in lines)


def test_reinitialised_backbone_is_named_at_start_and_stuck_at_chance():
    diag, start, losses, records, lines = fine_tune(reinit=True)
    chance = math.log(CLASSES)
    assert abs(np.mean(losses[-30:]) - chance) < 0.05 * chance  # the story: chance, for long

    reinit = [f for f in start if f.code == "reinit_pretrained"]
    assert len(reinit) == 1 and reinit[0].severity == ERROR
    message = reinit[0].message
    assert "pretrained weights were overwritten" in message
    assert "'conv1_w'" in message and "XavierFill" in message
    assert "%d blob(s)" % (DEPTH + 1) in message  # every weight, and conv1's non-zero bias
    assert reinit[0].where.blob == "conv1_w" and reinit[0].where.op_type == "XavierFill"

    stuck = [f for f in diag.findings if f.code == "stuck_at_chance"]
    assert stuck, diag.codes()
    assert "ln(%d)" % CLASSES in stuck[0].message
    assert "re-initialised" in stuck[0].message  # the evidence is tied back to the cause
    assert stuck[0].iteration <= ITERS

    # why it is stuck, visible in the statistics: the gradient dies out on its way down ...
    vanishing = [f for f in diag.findings if f.code == "vanishing_gradients"]
    assert vanishing and vanishing[0].where.blob == "conv1_grad"
    assert "|conv1_grad|" in vanishing[0].message and "|pred_grad|" in vanishing[0].message
    # ... and the signal on its way up
    dead = [f for f in diag.findings if f.code == "dead_relu"]
    assert dead and dead[-1].where.blob == "conv%d" % DEPTH and "100%" in dead[-1].message
    last = records[-1]["blobs"]
    assert last["conv%d" % DEPTH]["zero_frac"] == 1.0
    assert last["conv1"]["std"] > 1e2 * last["conv%d" % (DEPTH - 1)]["std"]
    assert last["softmax"]["max"] < 1.5 / CLASSES  # near-uniform predictions
