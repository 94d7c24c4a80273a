"""Shared by the export tests: a fine-tuned 101-way SqueezeNet (a few steps on random batches)."""
import os

import numpy as np

from food101 import zoo
from food101.caffe2 import workspace
from tests.support import ZOO

ZOO = ZOO


def fine_tuned(steps=2, unfreeze_from=None, zoo_model=None, num_classes=101, size=64):
    """(train ModelHelper, {blob: trained value} of every deploy-net parameter)."""
    workspace.ResetAll()
    base = zoo_model or zoo.load(ZOO)
    train = zoo.build_finetune_model(base, num_classes=num_classes, unfreeze_from=unfreeze_from)
    zoo.build_finetune_sgd(train, 0.05, policy="fixed", momentum=0.9)
    workspace.RunNetOnce(train.param_init_net)
    rs = np.random.RandomState(7)
    shape = (2,) + tuple(base.input_shape[1:2]) + (size, size)
    workspace.FeedBlob(train.finetune.input_blob, rs.randint(0, 256, shape).astype(np.uint8))
    workspace.FeedBlob("label", rs.randint(0, num_classes, 2).astype(np.int32))
    workspace.CreateNet(train.net)
    for _ in range(steps):
        workspace.RunNet(train.net.Proto().name)
    deploy = train.finetune.deploy
    weights = {b: workspace.FetchBlob(b) for b in deploy.params}
    workspace.ResetAll()
    return train, weights


def run_deploy(zoo_model, x, weights=None):
    """Run a zoo-format model (its own init net, or `weights`) on x in a fresh workspace."""
    workspace.ResetWorkspace()
    if weights is None:
        workspace.RunNetOnce(zoo_model.init_net)
    else:
        for name, value in weights.items():
            workspace.FeedBlob(name, value)
    workspace.FeedBlob(zoo_model.input_name, x)
    workspace.RunNetOnce(zoo_model.predict_net)
    out = workspace.FetchBlob(zoo_model.output_name)
    workspace.ResetWorkspace()
    return out
