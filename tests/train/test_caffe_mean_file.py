"""tools/train.py --solver on Caffe Datum LMDBs with a transform_param mean_file: the whole mean
image is subtracted (Caffe's DataTransformer), and a BatchNorm on the input ends with Caffe's
running statistics; the deploy folder carries the mean image; a mean image of another size is
refused naming the file and both sizes."""
import json
import os
import sys

import numpy as np
import pytest

from food101.interop.caffe import caffe_pb2
from tests.support import REPO
from tests.train.test_caffe_batchnorm import CaffeBatchNorm
from tests.datasets.test_mean_image import caffe_transform

sys.path.insert(0, os.path.join(REPO, "tools"))

NET = """name: "MeanFileBN"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
        transform_param { mean_file: "mean.binaryproto" scale: 0.5 }
        data_param { source: "train_lmdb" batch_size: 4 backend: LMDB } }
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
        transform_param { mean_file: "mean.binaryproto" scale: 0.5 }
        data_param { source: "test_lmdb" batch_size: 4 backend: LMDB } }
layer { name: "data_bn" type: "BatchNorm" bottom: "data" top: "data_bn"
        batch_norm_param { moving_average_fraction: 0.8 } }
layer { name: "conv1" type: "Convolution" bottom: "data_bn" top: "conv1"
        convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "pool" type: "Pooling" bottom: "conv1" top: "pool" pooling_param { pool: AVE global_pooling: true } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "pool" bottom: "label" top: "loss" }
"""

SOLVER = """net: "train_val.prototxt"
base_lr: 0.01
lr_policy: "fixed"
max_iter: 3
iter_size: 2
momentum: 0.9
solver_mode: CPU
random_seed: 1
display: 1
"""


def _datum_lmdb(path, images):
    import lmdb
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i, image in enumerate(images):
            datum = caffe_pb2.Datum(channels=3, height=image.shape[1], width=image.shape[2],
                                    label=i % 3, data=image.tobytes())
            txn.put(b"%08d" % i, datum.SerializeToString())
    env.close()


def _setup(tmp_path, mean_shape=(3, 10, 10)):
    rng = np.random.default_rng(2)
    train = rng.integers(0, 256, (8, 3, 10, 10), dtype=np.uint8)
    _datum_lmdb(tmp_path / "train_lmdb", train)
    _datum_lmdb(tmp_path / "test_lmdb", rng.integers(0, 256, (4, 3, 10, 10), dtype=np.uint8))
    mean = rng.uniform(0, 255, mean_shape).astype(np.float32)  # far from per-channel constant
    blob = caffe_pb2.BlobProto(num=1, channels=mean_shape[0], height=mean_shape[1],
                               width=mean_shape[2])
    blob.data.extend(mean.ravel().tolist())
    (tmp_path / "mean.binaryproto").write_bytes(blob.SerializeToString())
    (tmp_path / "train_val.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    return train, mean


def _train(tmp_path, capsys):
    import train as train_tool
    from food101.train.cli import train_main
    code = train_main(train_tool.get_args_parser().parse_args(
        ["--solver", str(tmp_path / "solver.prototxt"), "--output-dir", str(tmp_path / "run"),
         "--no-progress", "--set", "diagnostics.stats_interval=0", "--set", "data.shuffle=false",
         "--set", "data.crop_size=10"]))
    printed = capsys.readouterr()
    return code, printed.out + printed.err


def test_mean_file_run_subtracts_the_mean_image_and_keeps_caffe_bn_statistics(tmp_path, monkeypatch,
                                                                               capsys):
    train, mean = _setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, text = _train(tmp_path, capsys)
    assert code == 0, text
    # Caffe on the same batches (no shuffle, no mirror, full-size crop): 3 updates x iter_size 2
    caffe = CaffeBatchNorm([np.zeros(3), np.zeros(3), np.zeros(1)], 0.8)
    for k in range(6):
        batch = [train[(4 * k + i) % 8] for i in range(4)]
        caffe.forward(np.stack([caffe_transform(x, mean, 10, 0, 0, False, 0.5) for x in batch]),
                      use_global_stats=False)
    expected_mean, expected_var = caffe.test_stats()
    from food101.zoo.model import load
    deploy = tmp_path / "run" / "deploy"
    weights = load(str(deploy)).weights()
    np.testing.assert_allclose(weights["data_bn_mean"], expected_mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(weights["data_bn_var"], expected_var, rtol=1e-5)
    # the per-channel reduction would give other statistics: the image is what was subtracted
    flat = np.full_like(mean, 0) + mean.reshape(3, -1).mean(axis=1)[:, None, None]
    other = CaffeBatchNorm([np.zeros(3), np.zeros(3), np.zeros(1)], 0.8)
    for k in range(6):
        batch = [train[(4 * k + i) % 8] for i in range(4)]
        other.forward(np.stack([caffe_transform(x, flat, 10, 0, 0, False, 0.5) for x in batch]), False)
    assert np.abs(other.test_stats()[1] - expected_var).max() > 1e-2
    # the deploy folder carries the mean image; predict/evaluate subtract it
    info = json.loads((deploy / "preprocess.json").read_text())
    assert info["mean_image"] == "mean_image.npy" and info["mean_bgr"] is None
    np.testing.assert_array_equal(np.load(str(deploy / "mean_image.npy")), mean)
    from food101.inference.predict import load_model
    model = load_model(str(deploy))
    np.testing.assert_array_equal(model.mean, mean)
    from food101.inference.evaluate import evaluate_model
    assert evaluate_model(str(deploy), str(tmp_path / "test_lmdb"), batch_size=4)["images"] == 4


def test_a_mean_file_of_another_size_is_refused(tmp_path, monkeypatch, capsys):
    _setup(tmp_path, mean_shape=(3, 12, 12))
    monkeypatch.chdir(tmp_path)
    code, text = _train(tmp_path, capsys)
    assert code != 0
    assert "mean.binaryproto is a 3x12x12 mean image but the records of" in text
    assert "train_lmdb are 3x10x10" in text
