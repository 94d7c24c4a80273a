"""Training a Caffe setup: tools/train.py --solver follows the solver's net: line to a
train_val.prototxt and trains it with the solver's settings; the findings the users of
../shared/caffe_nets needed (BatchNorm statistics in a frozen net, poly max_iter, stride-1 pool)."""
import os
import sys

import numpy as np
import pytest

from food101.caffe2 import workspace
from food101.caffe2.proto import caffe2_pb2
from food101.interop.caffe import caffe_pb2 as caffe_pb2, netfile, translator
from food101.train import caffe_setup
from food101.train import config as C
from food101.train.loop import build_training_nets
from food101.train.metrics import read_jsonl
from tests.interop import caffe_fixtures as cf
from tests.support import REPO

sys.path.insert(0, os.path.join(REPO, "tools"))

TRAIN_VAL = """name: "TinyCaffe"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
        transform_param { crop_size: 24 mean_value: 104 mean_value: 117 mean_value: 123
                          mirror: true scale: 0.02 }
        data_param { source: "train_lmdb" batch_size: 12 backend: LMDB } }
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
        transform_param { crop_size: 24 mean_value: 104 mean_value: 117 mean_value: 123 scale: 0.02 }
        data_param { source: "test_lmdb" batch_size: 16 backend: LMDB } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        convolution_param { num_output: 8 kernel_size: 3 stride: 2 weight_filler { type: "msra" } } }
layer { name: "conv1_bn" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "conv1_scale" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 1 } }
layer { name: "aux_pool" type: "Pooling" bottom: "pool1" top: "aux_pool"
        pooling_param { pool: AVE global_pooling: true } }
layer { name: "aux_fc" type: "InnerProduct" bottom: "aux_pool" top: "aux_fc"
        inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "aux_loss" type: "SoftmaxWithLoss" bottom: "aux_fc" bottom: "label" top: "aux_loss"
        loss_weight: 0.3 }
layer { name: "conv_head" type: "Convolution" bottom: "pool1" top: "conv_head"
        convolution_param { num_output: 10 kernel_size: 1 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "pool_head" type: "Pooling" bottom: "conv_head" top: "pool_head"
        pooling_param { pool: AVE global_pooling: true } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "pool_head" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "pool_head" bottom: "label" top: "accuracy" }
"""

SOLVER = """net: "train_val.prototxt"
test_iter: 2
test_interval: 6
base_lr: 0.05
display: 3
max_iter: 12
iter_size: 2
lr_policy: "poly"
power: 0.5
momentum: 0.9
weight_decay: 0.0005
snapshot: 6
snapshot_prefix: "tiny"
solver_mode: CPU
random_seed: 5
average_loss: 3
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from food101.data.synthetic import make_demo_dataset
    from food101.data.writer import build_lmdb
    root = tmp_path_factory.mktemp("caffe_demo")
    dataset = make_demo_dataset(str(root / "food"), train_per_class=8, test_per_class=4,
                                max_side=64, seed=1)
    for split in ("train", "test"):
        build_lmdb(dataset.root, split, str(root / "caffe" / ("%s_lmdb" % split)), size=32,
                   workers=0, progress=False)
    (root / "caffe" / "train_val.prototxt").write_text(TRAIN_VAL)
    (root / "caffe" / "solver.prototxt").write_text(SOLVER)
    return root


def test_solver_net_and_data_layers_make_the_config(demo, monkeypatch):
    monkeypatch.chdir(demo)
    cfg = C.load_config(solver_path=str(demo / "caffe" / "solver.prototxt"))
    assert cfg.model.caffe_net == str(demo / "caffe" / "train_val.prototxt")
    assert (cfg.data.batch_size, cfg.data.test_batch_size, cfg.data.crop_size) == (12, 16, 24)
    assert cfg.data.mean == (104.0, 117.0, 123.0) and cfg.data.mirror is True
    assert cfg.data.train_lmdb == str(demo / "caffe" / "train_lmdb")  # `source` beside the net
    assert (cfg.solver.iter_size, cfg.solver.average_loss, cfg.solver.test_iter) == (2, 3, 2)
    assert cfg.solver.nesterov is False  # Caffe's default solver type is plain SGD


def test_translated_train_val_trains_with_the_solver(demo, monkeypatch, capsys):
    import train as train_tool
    from food101.train.cli import train_main
    monkeypatch.chdir(demo)
    out = demo / "run"
    code = train_main(train_tool.get_args_parser().parse_args(
        ["--solver", str(demo / "caffe" / "solver.prototxt"), "--output-dir", str(out),
         "--set", "model.num_classes=6", "--no-progress", "--set", "diagnostics.stats_interval=0"]))
    printed = capsys.readouterr()
    text = printed.out + printed.err
    assert code == 0, text
    assert "conv_head: classifier num_output 10 -> 6" in text
    assert "aux_fc: classifier num_output 10 -> 6" in text
    assert "pool1: overlapping max pool: stride 1 with kernel_size 2" in text
    assert "aux_loss x 0.3" in text
    records = [r for r in read_jsonl(str(out / "metrics.jsonl")) if r.get("phase") == "train"]
    assert len(records) == 12 and all(np.isfinite(r["loss"]) for r in records)
    assert os.path.exists(str(out / "tiny_iter_12.ckpt")) or any(
        f.endswith("_iter_12.ckpt") for f in os.listdir(str(out)))
    assert os.path.exists(str(out / "deploy" / "predict_net.pb"))


def test_train_net_follows_caffe_semantics(demo, monkeypatch):
    """Weighted loss sum, lr_mult groups, decay_mult, the input scale, BN in training mode."""
    monkeypatch.chdir(demo)
    cfg = C.load_config(solver_path=str(demo / "caffe" / "solver.prototxt"),
                        overrides={"model.num_classes": 6})
    nets = build_training_nets(cfg, ["c%d" % i for i in range(6)], caffe2_pb2.DeviceOption())
    ops = list(nets.fwd_bwd.op)
    assert ops[0].type == "Scale" and nets.data == "data_unscaled"
    weighted = {op.input[0]: [a.f for a in op.arg if a.name == "scale"][0]
                for op in ops if op.type == "Scale" and op.output[0].endswith("_weighted")}
    assert weighted == pytest.approx({"aux_loss": 0.3, "loss": 1.0})
    assert nets.loss == "loss_total"
    rates = sorted(abs([a.f for a in op.arg if a.name == "base_lr"][0])
                   for op in nets.update.op if op.type == "LearningRate")
    assert rates == pytest.approx([0.05, 0.1])  # lr_mult 1 and the bias's lr_mult 2
    decayed = {op.input[2] for op in ops + list(nets.update.op)
               if op.type == "WeightedSum" and len(op.input) == 4 and op.input[0].endswith("_grad")}
    assert "conv1_w" in decayed and "conv1_b" not in decayed  # decay_mult 0 on the bias
    bn = [op for op in ops if op.type == "SpatialBN"][0]
    assert bn.name == "conv1_bn" and [a.i for a in bn.arg if a.name == "is_test"] == [0]
    assert "conv1_bn_scale" not in nets.params  # Caffe's BatchNorm has no learnt affine part
    assert nets.probs == "pool_head_translator_autogen_softmax"


def test_seed_bn_frozen_gets_the_batchnorm_finding_in_caffe_terms():
    net = netfile.read_net(cf.net_path("seed_bn_frozen/train_val.prototxt"))
    solver = C.load_config(solver_path=cf.net_path("seed_bn_frozen/solver.prototxt")).solver
    train = translator.translate(net, phase="TRAIN")
    findings = caffe_setup.caffe_findings(train, solver, "train_val.prototxt")
    (layer, message), = [f for f in findings if f[0] != "solver"]
    assert layer == "res2_1a_1_bn"
    assert "BatchNorm layer 'res2_1a_1_bn' updates its running statistics" in message
    assert "every parameter is frozen" in message and "use_global_stats: true" in message
    # the accepted answer's fix: its two layers in place of the net's BatchNorm and Scale
    lines = open(cf.net_path("seed_bn_frozen/train_val.prototxt")).read().splitlines()
    fix = open(cf.net_path("seed_bn_frozen/fixed_bn_layers.prototxt")).read()
    text = "\n".join(fix if '"res2_1a_1_bn" type: "BatchNorm"' in l else l for l in lines
                     if '"res2_1a_1_scale"' not in l)
    fixed = netfile.parse_text(text, caffe_pb2.NetParameter())
    fixed_train = translator.translate(fixed, phase="TRAIN")
    assert not [f for f in caffe_setup.caffe_findings(fixed_train, solver, "x") if f[0] != "solver"]


def test_seed_fneishnet_solver_poly_finding_and_stride_one_pool_note(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # its net: "models/fneishnet_numbers/train_val.prototxt"
    cfg = C.load_config(solver_path=cf.net_path("seed_fneishnet/solver.prototxt"))
    assert cfg.model.caffe_net == cf.net_path("seed_fneishnet/train_val.prototxt")
    net = netfile.read_net(cfg.model.caffe_net)
    train = translator.translate(net, phase="TRAIN", data_shapes={"data": [1, 1, 24, 15]})
    findings = dict(caffe_setup.caffe_findings(train, cfg.solver, "train_val.prototxt"))
    poly = findings["solver"]
    assert "poly with power 0.5 and max_iter 3000000" in poly
    assert "99." in poly and "set max_iter to the iterations you will run" in poly
    assert ("pool1", "overlapping max pool: stride 1 with kernel_size 2 keeps the size (Keras/most "
            "frameworks default stride = pool size)") in train.notes


def test_a_frozen_net_says_there_is_nothing_to_train(demo, monkeypatch):
    monkeypatch.chdir(demo)
    frozen = TRAIN_VAL.replace("param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }",
                               "param { lr_mult: 0 } param { lr_mult: 0 }")
    (demo / "caffe" / "frozen.prototxt").write_text(frozen)
    cfg = C.load_config(solver_path=str(demo / "caffe" / "solver.prototxt"),
                        overrides={"model.caffe_net": str(demo / "caffe" / "frozen.prototxt"),
                                   "solver.base_lr": 0.0})
    with pytest.raises(Exception, match="(?s)nothing to train.*conv1_bn"):
        build_training_nets(cfg, ["c%d" % i for i in range(6)], caffe2_pb2.DeviceOption())
    assert workspace  # nothing ran in the user's workspace


def _datum_lmdb(path, images_labels):
    import lmdb
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i, (image, label) in enumerate(images_labels):
            datum = caffe_pb2.Datum(channels=3, height=image.shape[1], width=image.shape[2],
                                    label=int(label), data=image.tobytes())
            txn.put(b"%08d" % i, datum.SerializeToString())
    env.close()


def test_caffe_datum_lmdbs_mean_file_and_class_count_from_the_net(tmp_path, monkeypatch, caplog):
    """A Caffe user's own setup: Data layers on convert_imageset LMDBs (Datum records, no class
    names), a mean_file; the class count comes from the net's classifier (num_output 4)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("test", 8)):
        _datum_lmdb(tmp_path / ("%s_lmdb" % split),
                    [(rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), i % 4) for i in range(n)])
    mean = caffe_pb2.BlobProto(num=1, channels=3, height=28, width=28)
    mean.data.extend(np.repeat([100.0, 110.0, 120.0], 28 * 28).tolist())
    (tmp_path / "mean.binaryproto").write_bytes(mean.SerializeToString())
    net = (TRAIN_VAL.replace("mean_value: 104 mean_value: 117 mean_value: 123", 'mean_file: "mean.binaryproto"')
           .replace("num_output: 10", "num_output: 4"))
    (tmp_path / "train_val.prototxt").write_text(net)
    (tmp_path / "solver.prototxt").write_text(SOLVER.replace("max_iter: 12", "max_iter: 4"))
    monkeypatch.chdir(tmp_path)
    cfg = C.load_config(solver_path=str(tmp_path / "solver.prototxt"))
    assert os.path.abspath(cfg.data.mean_file) == str(tmp_path / "mean.binaryproto")  # the image
    from food101.train import fine_tune
    result = fine_tune(cfg, overrides={"train.output_dir": str(tmp_path / "run"),
                                       "diagnostics.stats_interval": 0})
    with open(result["eval_path"]) as f:
        evaluation = __import__("json").load(f)
    assert sorted(evaluation["per_class"]) == ["class_0", "class_1", "class_2", "class_3"]
    assert evaluation["images"] == 8 and np.isfinite(evaluation["loss"])


def test_training_translation_fuses_softmax_with_loss():
    """For training, SoftmaxWithLoss is Caffe2's fused op (gradient prob - onehot, as Caffe's
    layer); the default translation stays Caffe2's translator's Softmax + LabelCrossEntropy."""
    from google.protobuf import text_format
    from food101.caffe2 import core
    net = text_format.Parse(TRAIN_VAL, caffe_pb2.NetParameter())
    shapes = {"data": [1, 3, 24, 24]}
    plain = translator.translate(net, phase="TRAIN", data_shapes=shapes)
    fused = translator.translate(net, phase="TRAIN", data_shapes=shapes, trainer=True)
    assert "LabelCrossEntropy" in [op.type for op in plain.ops]
    types = [op.type for op in fused.ops]
    assert "LabelCrossEntropy" not in types and types.count("SoftmaxWithLoss") == 2
    # a confidently wrong image still gets the full gradient, prob - onehot
    workspace.ResetWorkspace()
    workspace.FeedBlob("s", np.array([[60.0, 0.0, -60.0]], np.float32))
    workspace.FeedBlob("l", np.array([2], np.int32))
    check = core.Net("fused_check")
    check.SoftmaxWithLoss(["s", "l"], ["p", "loss"])
    check.AddGradientOperators(["loss"])
    workspace.RunNetOnce(check)
    np.testing.assert_allclose(workspace.FetchBlob("s_grad"), [[1.0, 0.0, -1.0]], atol=1e-6)
