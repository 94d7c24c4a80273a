"""What is not an ONNX model is refused naming the file: a truncated download, an empty file, a
.caffemodel renamed .onnx; from_onnx and tools/train.py --zoo-dir say the same."""
import os
import warnings

import pytest
import torch
import torch.nn as nn

from food101.interop.backbone import backbone_name
from food101.interop.caffe import caffe_pb2
from food101.interop.onnx_import import from_onnx
from food101.train.config import ModelConfig
from food101.train.nets import TrainingError, load_zoo_model
from food101.zoo.model import ZooError

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def good_onnx(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("onnx") / "tiny_net.onnx")
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 5)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.randn(1, 3, 8, 8), path, dynamo=False)
    return path


def _bad_files(good, folder):
    data = open(good, "rb").read()
    caffemodel = caffe_pb2.NetParameter(name="tiny")
    layer = caffemodel.layer.add(name="conv1", type="Convolution")
    layer.blobs.add().data.extend([0.5] * 64)
    files = {"truncated": data[: len(data) // 2], "empty": b"",
             "caffemodel": caffemodel.SerializeToString()}
    paths = {}
    for name, content in files.items():
        paths[name] = os.path.join(folder, name + ".onnx")
        with open(paths[name], "wb") as f:
            f.write(content)
    return paths


def test_not_an_onnx_model_is_refused_naming_the_file(good_onnx, tmp_path):
    assert from_onnx(good_onnx).predict_net.op  # the fixture itself imports
    bad = _bad_files(good_onnx, str(tmp_path))
    for kind, path in bad.items():
        with pytest.raises(ZooError) as e:
            from_onnx(path)
        assert str(e.value).startswith("%s is not an ONNX model (" % path), (kind, str(e.value))
    with pytest.raises(ZooError, match="the file is empty"):
        from_onnx(bad["empty"])
    with pytest.raises(ZooError, match="does not parse"):
        from_onnx(bad["truncated"])
    with pytest.raises(ZooError, match="no ir_version.*caffemodel"):
        from_onnx(bad["caffemodel"])
    with pytest.raises(ZooError, match="cannot read ONNX file .*missing.onnx"):
        from_onnx(str(tmp_path / "missing.onnx"))


def test_train_zoo_dir_reports_the_file(good_onnx, tmp_path):
    bad = _bad_files(good_onnx, str(tmp_path))
    with pytest.raises(TrainingError, match=r"model.zoo_dir: .*truncated\.onnx is not an ONNX"):
        load_zoo_model(ModelConfig(zoo_dir=bad["truncated"]))


def test_backbone_names_for_file_names(good_onnx, tmp_path):
    assert backbone_name(good_onnx) == "tiny_net"
    assert backbone_name(os.path.dirname(good_onnx)) == "tiny_net"   # a folder with one .onnx
    (tmp_path / "deploy.prototxt").write_text('name: "GoogleNet"\ninput: "data"\n')
    assert backbone_name(str(tmp_path / "deploy.prototxt")) == "googlenet"
    from tests.support import ZOO
    assert backbone_name(ZOO) == "squeezenet"                        # its predict net's name


def test_a_run_on_a_bad_onnx_leaves_no_folder(good_onnx, tmp_path):
    from food101.data import build_lmdb
    from food101.data.synthetic import make_demo_dataset
    from food101.train import fine_tune
    demo = make_demo_dataset(str(tmp_path / "food"), train_per_class=2, test_per_class=1,
                             max_side=40)
    lmdb = build_lmdb(demo.root, "train", str(tmp_path / "train"), size=36, workers=0,
                      progress=False).out
    bad = _bad_files(good_onnx, str(tmp_path))
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match="truncated.onnx is not an ONNX model"):
        fine_tune(overrides={"data.train_lmdb": lmdb, "data.test_lmdb": "", "data.crop_size": 32,
                             "model.zoo_dir": bad["truncated"], "train.output_dir": str(out),
                             "train.progress": False})
    assert not out.exists()
