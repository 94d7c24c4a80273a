"""Caffe's BatchNorm running statistics when a translated Caffe net trains: the trainer's nets
keep Caffe's scale factor and m/(m-1) variance correction (CaffeBatchNormStats), checked
against a numpy transcription of batch_norm_layer.cpp's Forward_cpu over several TRAIN
iterations, then its TEST forward, from zero statistics and from a caffemodel's blobs."""
import numpy as np
import pytest
from google.protobuf import text_format

from food101.caffe2 import workspace
from food101.caffe2.proto import caffe2_pb2
from food101.caffe2.utils import ArgsToDict, external_reads
from food101.interop.caffe import caffe_pb2, translator
from food101.train import config as C
from food101.train.loop import build_training_nets
from tests.interop import caffe_fixtures as cf

EPS = 1e-5


class CaffeBatchNorm:
    """BVLC Caffe's BatchNormLayer<float>::Forward_cpu, blobs_ = [mean_acc, var_acc, s]."""

    def __init__(self, blobs, maf):
        self.blobs = [np.array(b, np.float32) for b in blobs]
        self.maf = np.float32(maf)

    def forward(self, x, use_global_stats):
        x = x.astype(np.float32)
        n, c = x.shape[:2]
        if use_global_stats:
            s = self.blobs[2][0]
            factor = np.float32(0) if s == 0 else np.float32(1) / s
            mean, var = factor * self.blobs[0], factor * self.blobs[1]
        else:
            mean = x.reshape(n, c, -1).mean(axis=2, dtype=np.float32).mean(axis=0, dtype=np.float32)
        centred = x - mean.reshape(1, c, 1, 1)
        if not use_global_stats:
            var = (centred * centred).reshape(n, c, -1).mean(axis=2, dtype=np.float32).mean(
                axis=0, dtype=np.float32)
            self.blobs[2][0] = self.blobs[2][0] * self.maf + np.float32(1)
            self.blobs[0] = mean + self.maf * self.blobs[0]
            m = x.size // c
            correction = np.float32(m) / np.float32(m - 1) if m > 1 else np.float32(1)
            self.blobs[1] = correction * var + self.maf * self.blobs[1]
        return centred / np.sqrt(var + np.float32(EPS)).reshape(1, c, 1, 1)

    def test_stats(self):
        s = self.blobs[2][0]
        factor = np.float32(0) if s == 0 else np.float32(1) / s
        return factor * self.blobs[0], factor * self.blobs[1]


BN_NET = """name: "bn"
input: "x" input_shape { dim: 4 dim: 3 dim: 5 dim: 5 }
layer { name: "bn1" type: "BatchNorm" bottom: "x" top: "x" batch_norm_param { moving_average_fraction: %s } }
"""


def _caffemodel(blobs, name="bn1"):
    return cf.caffemodel({name: blobs}, name="w")


def _pretrained(rng, channels):
    s = np.array([3.7], np.float32)  # a caffemodel saved after a few iterations: s != 1
    return [rng.normal(0.5, 1, channels).astype(np.float32) * s,
            rng.uniform(0.5, 2, channels).astype(np.float32) * s, s]


def _run(ops):
    net = caffe2_pb2.NetDef(name="bn_check")
    net.op.extend(ops)
    workspace.RunNetOnce(net)


@pytest.mark.parametrize("start", ["zero", "caffemodel"])
@pytest.mark.parametrize("maf", [0.999, 0.9])
def test_translated_batchnorm_keeps_caffe_running_statistics(start, maf):
    rng = np.random.default_rng(3)
    net = text_format.Parse(BN_NET % maf, caffe_pb2.NetParameter())
    blobs = _pretrained(rng, 3) if start == "caffemodel" else [np.zeros(3), np.zeros(3), np.zeros(1)]
    weights = _caffemodel(blobs) if start == "caffemodel" else None
    caffe = CaffeBatchNorm(blobs, maf)
    train = translator.translate(net, weights, phase="TRAIN", trainer=True)
    test = translator.translate(net, weights, phase="TEST")
    types = [op.type for op in train.ops]
    assert types == ["CaffeBatchNormStats", "SpatialBN"]
    assert ArgsToDict(train.ops[1].arg)["momentum"] == 1.0
    workspace.ResetWorkspace()
    workspace.RunNetOnce(train.init_net())
    assert workspace.FetchBlob("x_scale_factor")[0] == blobs[2][0]
    for it in range(6):
        x = rng.normal(2.0, 3.0, (4, 3, 5, 5)).astype(np.float32)
        workspace.FeedBlob("x", x)
        _run(train.ops)
        y = caffe.forward(x, use_global_stats=False)
        np.testing.assert_allclose(workspace.FetchBlob("x"), y, rtol=1e-5, atol=1e-5)
        mean, var = caffe.test_stats()
        np.testing.assert_allclose(workspace.FetchBlob("x_mean"), mean, rtol=2e-6, atol=1e-6)
        np.testing.assert_allclose(workspace.FetchBlob("x_var"), var, rtol=2e-6)
        assert workspace.FetchBlob("x_scale_factor")[0] == pytest.approx(caffe.blobs[2][0], rel=1e-6)
    # the TEST phase normalises with Caffe's mean_acc / s and var_acc / s
    x = rng.normal(2.0, 3.0, (4, 3, 5, 5)).astype(np.float32)
    workspace.FeedBlob("x", x)
    _run(test.ops)
    np.testing.assert_allclose(workspace.FetchBlob("x"), caffe.forward(x, use_global_stats=True),
                               rtol=1e-5, atol=1e-5)


def test_caffe2_translation_keeps_spatial_bn_momentum():
    """tools/translate_caffe.py's translation stays Caffe2's translator's: no extra op/blob."""
    net = text_format.Parse(BN_NET % 0.95, caffe_pb2.NetParameter())
    plain = translator.translate(net, phase="TRAIN")
    assert [op.type for op in plain.ops] == ["SpatialBN"]
    assert ArgsToDict(plain.ops[0].arg)["momentum"] == pytest.approx(0.95)
    assert "x_scale_factor" not in plain.params


def test_batch_of_one_value_per_channel_has_no_correction():
    """m = N*H*W = 1: Caffe's bias correction factor is 1 (the batch variance, 0, is kept)."""
    workspace.ResetWorkspace()
    for name, value in (("x", np.array([[[[5.0]], [[-1.0]]]], np.float32)),
                        ("m", np.array([1.0, 2.0], np.float32)), ("v", np.array([4.0, 8.0], np.float32)),
                        ("s", np.array([2.0], np.float32))):
        workspace.FeedBlob(name, value)
    op = caffe2_pb2.OperatorDef(type="CaffeBatchNormStats", input=["x", "m", "v", "s"],
                                output=["m", "v", "s"])
    op.arg.add(name="moving_average_fraction", f=0.5)
    _run([op])
    # s = 0.5*2 + 1 = 2; mean = (0.5*2*[1,2] + [5,-1]) / 2; var = (0.5*2*[4,8] + 0) / 2
    np.testing.assert_allclose(workspace.FetchBlob("m"), [3.0, 0.5])
    np.testing.assert_allclose(workspace.FetchBlob("v"), [2.0, 4.0])
    np.testing.assert_allclose(workspace.FetchBlob("s"), [2.0])


TRAIN_VAL = """name: "TinyBN"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
        transform_param { crop_size: 8 } data_param { source: "x" batch_size: 6 backend: LMDB } }
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
        transform_param { crop_size: 8 } data_param { source: "y" batch_size: 6 backend: LMDB } }
layer { name: "data_bn" type: "BatchNorm" bottom: "data" top: "data_bn"
        batch_norm_param { moving_average_fraction: 0.9 } }
layer { name: "conv1" type: "Convolution" bottom: "data_bn" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "pool" type: "Pooling" bottom: "conv1" top: "pool" pooling_param { pool: AVE global_pooling: true } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "pool" bottom: "label" top: "loss" }
"""


def test_trainer_nets_reproduce_caffe_statistics_from_a_caffemodel(tmp_path):
    """The trainer's nets (tools/train.py --solver's build), 5 updates with iter_size 2 (each
    forward pass is one Caffe Forward), from a caffemodel whose scale factor is 3.7; then the
    deploy model normalises as Caffe's TEST phase does."""
    rng = np.random.default_rng(5)
    (tmp_path / "train_val.prototxt").write_text(TRAIN_VAL)
    blobs = _pretrained(rng, 3)
    (tmp_path / "w.caffemodel").write_bytes(_caffemodel(blobs, "data_bn").SerializeToString())
    cfg = C.from_dict({"model": {"caffe_net": str(tmp_path / "train_val.prototxt"),
                                 "zoo_dir": str(tmp_path / "w.caffemodel"), "num_classes": 4},
                       "data": {"crop_size": 8}, "solver": {"iter_size": 2, "base_lr": 0.01}},
                      "test")
    workspace.ResetWorkspace()
    nets = build_training_nets(cfg, ["a", "b", "c", "d"], caffe2_pb2.DeviceOption())
    assert "data_bn_scale_factor" not in nets.frozen_blobs
    for net in nets.init:
        workspace.RunNetOnce(net)
    caffe = CaffeBatchNorm(blobs, 0.9)
    workspace.FeedBlob(nets.data, np.zeros((6, 3, 8, 8), np.float32))
    workspace.FeedBlob(nets.label, np.zeros(6, np.int32))
    workspace.CreateNet(nets.fwd_bwd, overwrite=True)
    written = {o for op in nets.fwd_bwd.op for o in op.output}
    workspace.CreateNet(nets.update, overwrite=True,
                        input_blobs=[b for b in external_reads(nets.update) if b in written])
    for it in range(5):
        for k in range(2):
            x = rng.uniform(-100, 150, (6, 3, 8, 8)).astype(np.float32)
            workspace.FeedBlob(nets.data, x)
            workspace.FeedBlob(nets.label, rng.integers(0, 4, 6).astype(np.int32))
            workspace.RunNet(nets.fwd_bwd.name)
            caffe.forward(x, use_global_stats=False)
        workspace.RunNet(nets.update.name)
    mean, var = caffe.test_stats()
    np.testing.assert_allclose(workspace.FetchBlob("data_bn_mean"), mean, rtol=2e-6)
    np.testing.assert_allclose(workspace.FetchBlob("data_bn_var"), var, rtol=2e-6)
    # the deploy model (what export writes) reads the same blobs, in test mode
    deploy = nets.train_model.finetune.deploy
    bn = [op for op in deploy.predict_net.op if op.type == "SpatialBN"][0]
    assert ArgsToDict(bn.arg)["is_test"] == 1 and list(bn.input[3:5]) == ["data_bn_mean", "data_bn_var"]
