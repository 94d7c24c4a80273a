"""A Caffe2-style multi-device script, unchanged but for the import: Parallelize_CPU with
devices=[0, 1]. Run by tests/caffe2/test_parallelize.py under torchrun (2 processes)."""
import numpy as np
from food101.caffe2 import data_parallel_model, model_helper, brew, optimizer, workspace
def add_inputs(model):
    pass
def forward(model, loss_scale):
    fc = brew.fc(model, "data", "fc", 4, 2)
    dist = model.SquaredL2Distance([fc, "target"], "dist")
    loss = model.AveragedLoss(dist, "loss")
    return [model.Scale(loss, "loss_scaled", scale=loss_scale)]
def add_optimizer(model):
    return optimizer.build_sgd(model, base_learning_rate=0.1)
model = model_helper.ModelHelper(name="train")
data_parallel_model.Parallelize_CPU(model, input_builder_fun=add_inputs, forward_pass_builder_fun=forward,
                                    optimizer_builder_fun=add_optimizer, devices=[0, 1])
import os
rank = int(os.environ.get("LOCAL_RANK", 0))
rs = np.random.RandomState(rank)
workspace.FeedBlob("cpu_%d/data" % rank, rs.randn(3, 4).astype(np.float32))
workspace.FeedBlob("cpu_%d/target" % rank, rs.randn(3, 2).astype(np.float32))
data_parallel_model.RunInitNet(model)
data_parallel_model.RunNet(model, 1)
np.save(os.path.join(os.environ["PARALLELIZE_OUT"], "fc_w_%d.npy" % rank),
        workspace.FetchBlob("cpu_%d/fc_w" % rank))
