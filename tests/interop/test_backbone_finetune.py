"""Fine-tuning backbones from elsewhere: an ONNX export of a torch model and a translated Caffe
model load like a zoo folder (load_backbone), get a new head where their classifier is (the last
FC, or SqueezeNet's last 1x1 conv before the global pool), train with the backbone frozen, and
the frozen audit stays clean."""
import os
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

from food101 import zoo
from food101.caffe2 import workspace
from food101.interop.backbone import load_backbone
from food101.interop.caffe import netfile
from food101.zoo.model import find_classifier
from tests.interop import caffe_fixtures as cf

onnx = pytest.importorskip("onnx")


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU6(),
                                      nn.Conv2d(8, 8, 3, 1, 1, groups=8), nn.ReLU6())
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def _train(model, steps=20, lr=2.0):
    zoo.build_finetune_sgd(model, lr, policy="fixed", momentum=0.9)
    workspace.RunNetOnce(model.param_init_net)
    before = zoo.frozen_checksums(model)
    rs = np.random.RandomState(0)
    shape = model.finetune.deploy.input_shape
    label = (np.arange(8) % model.finetune.num_classes).astype(np.int32)
    # images whose brightness per channel depends on the class: separable through any backbone
    offsets = np.eye(3)[label % 3] * 2.0 - 1.0
    data = (rs.randn(8, *shape[1:]) * 0.2 + offsets[:, :, None, None]).astype(np.float32)
    workspace.FeedBlob(model.finetune.input_blob, data)
    workspace.FeedBlob("label", label)
    workspace.CreateNet(model.net)
    losses = []
    for _ in range(steps):
        workspace.RunNet(model.net.Proto().name)
        losses.append(float(workspace.FetchBlob("loss")))
    return losses, zoo.audit_frozen(before, model)


def test_onnx_export_fine_tunes_with_a_new_fc_head(tmp_path):
    torch.manual_seed(0)
    net = SmallNet().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.randn(1, 3, 16, 16), str(tmp_path / "small.onnx"), dynamo=False)
    backbone = load_backbone(str(tmp_path))  # a folder holding one .onnx
    assert backbone.predict_net.op[-1].type == "Softmax"  # logits -> probabilities
    assert find_classifier(backbone.predict_net).type == "FC"
    food = zoo.replace_classifier(backbone, 3)
    model = zoo.build_finetune_model(food, input_kind="float")
    assert len(model.finetune.new_params) == 2 and model.finetune.new_params[0].endswith("_w")
    losses, audit = _train(model)
    assert losses[-1] < 0.7 * losses[0], losses
    assert audit.ok and audit.checked >= 3, audit.report()


def _write_caffe_folder(folder):
    """A small Caffe deploy net (conv, BN + Scale, ReLU, 1x1 conv head, global pool, softmax)
    with random weights, as a Caffe user's model folder."""
    text = """name: "tiny" input: "data" input_shape { dim: 1 dim: 3 dim: 12 dim: 12 }
      layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
              convolution_param { num_output: 6 kernel_size: 3 stride: 2 } }
      layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
      layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
      layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
      layer { name: "conv_head" type: "Convolution" bottom: "conv1" top: "conv_head"
              convolution_param { num_output: 10 kernel_size: 1 } }
      layer { name: "pool" type: "Pooling" bottom: "conv_head" top: "pool"
              pooling_param { pool: AVE global_pooling: true } }
      layer { name: "prob" type: "Softmax" bottom: "pool" top: "prob" }"""
    os.makedirs(folder)
    with open(os.path.join(folder, "deploy.prototxt"), "w") as f:
        f.write(text)
    rs = np.random.RandomState(3)
    weights = {"conv1": [rs.randn(6, 3, 3, 3) * 0.3, rs.randn(6) * 0.1],
               "bn1": [rs.randn(6) * 0.1, rs.rand(6) + 0.5, np.array([1.0])],
               "scale1": [rs.rand(6) + 0.5, rs.randn(6) * 0.1],
               "conv_head": [rs.randn(10, 6, 1, 1) * 0.3, rs.randn(10) * 0.1]}
    model = cf.caffemodel(weights, name="tiny")
    with open(os.path.join(folder, "tiny.caffemodel"), "wb") as f:
        f.write(model.SerializeToString())


def test_translated_caffe_model_fine_tunes_with_a_new_conv_head(tmp_path):
    _write_caffe_folder(str(tmp_path / "caffe"))
    backbone = load_backbone(str(tmp_path / "caffe"))
    assert backbone.output_name == "prob" and backbone.input_shape == (1, 3, 12, 12)
    clf = find_classifier(backbone.predict_net)
    assert (clf.type, clf.output) == ("Conv", "conv_head")
    food = zoo.replace_classifier(backbone, 4)
    model = zoo.build_finetune_model(food, input_kind="float")
    losses, audit = _train(model)
    assert losses[-1] < 0.7 * losses[0], losses
    assert audit.ok and audit.checked >= 4, audit.report()


def test_translated_squeezenet_classifier_is_conv10(tmp_path):
    spec, _ = cf.case("squeezenet_v1_1")
    folder = tmp_path / "sq"
    folder.mkdir()
    (folder / "deploy.prototxt").write_text(open(cf.net_path("squeezenet_v1.1/deploy.prototxt")).read())
    cf.write_caffemodel(str(folder / "squeezenet_v1.1.caffemodel"), spec)
    backbone = load_backbone(str(folder))
    assert find_classifier(backbone.predict_net).output == "conv10"
    assert backbone.input_shape == (1, 3, 227, 227)


def test_a_folder_that_is_no_model_says_what_it_expected(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(zoo.ZooError, match="one .onnx file, or deploy.prototxt"):
        load_backbone(str(tmp_path))
    assert netfile  # the Caffe reader is what load_backbone uses for prototxt folders
