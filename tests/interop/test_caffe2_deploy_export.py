"""food101.interop.deploy.to_caffe2: a deployable Model Zoo folder of the fine-tuned 101-way model."""
import json
import os

import numpy as np
import pytest
from tests.support.export_helpers import fine_tuned, run_deploy

from food101 import zoo
from food101.interop import deploy, export
from food101.caffe2 import workspace
from food101.caffe2.proto import caffe2_pb2, load_net
from tests.support import REPO

REPO = REPO

# Every op type and argument the deploy nets may use: all standard in real Caffe2's schema.
CAFFE2_OPS = {
    "Conv": {"kernel", "kernels", "kernel_h", "kernel_w", "stride", "strides", "stride_h", "stride_w",
             "pad", "pads", "pad_t", "pad_l", "pad_b", "pad_r", "dilation", "dilations", "group",
             "order"},
    "Relu": {"order"}, "Concat": {"axis", "order", "add_axis"}, "Dropout": {"ratio", "is_test"},
    "MaxPool": {"kernel", "stride", "pad", "legacy_pad", "global_pooling", "order"},
    "AveragePool": {"kernel", "stride", "pad", "legacy_pad", "global_pooling", "order",
                    "count_include_pad"},
    "Softmax": {"axis", "order"}, "SpatialBN": {"is_test", "epsilon", "momentum", "order"},
    "GivenTensorFill": {"shape", "values"},
}


@pytest.fixture(scope="module")
def trained():
    return fine_tuned()


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    train, weights = trained
    dest = tmp_path_factory.mktemp("deploy")
    model = deploy.to_caffe2(train, dest, weights=weights)
    return dest, model


def test_folder_layout_and_metadata(exported, trained):
    dest, model = exported
    assert sorted(os.listdir(dest)) == ["init_net.pb", "labels.txt", "predict_net.pb", "preprocess.json",
                                        "value_info.json"]
    assert json.loads((dest / "value_info.json").read_text()) == {"data": [1, [1, 3, 227, 227]]}
    with open(os.path.join(REPO, "models", "food101", "classes.txt")) as fh:
        assert (dest / "labels.txt").read_text().split() == fh.read().split()
    pre = json.loads((dest / "preprocess.json").read_text())
    assert pre["mean_bgr"] == [104.0, 117.0, 123.0] and pre["output"] == "softmaxout"
    assert model.num_classes == 101 and model.class_names[0] == "apple_pie"
    assert model.input_name == "data" and model.output_name == "softmaxout"


def test_nets_use_only_standard_caffe2_ops_and_args(exported):
    dest, _ = exported
    for name in ("predict_net.pb", "init_net.pb"):
        net = load_net(dest / name)
        raw = (dest / name).read_bytes()
        check = caffe2_pb2.NetDef.FromString(raw)
        check.DiscardUnknownFields()
        assert check.SerializeToString() == raw  # nothing outside caffe2.proto
        for op in net.op:
            assert op.type in CAFFE2_OPS, op.type
            assert not op.engine and not op.HasField("device_option")
            unknown = {a.name for a in op.arg} - CAFFE2_OPS[op.type]
            assert not unknown, (op.type, unknown)
            if op.type in ("Dropout", "SpatialBN"):
                assert [a.i for a in op.arg if a.name == "is_test"] == [1] and len(op.output) == 1
    predict = load_net(dest / "predict_net.pb")
    assert list(predict.external_output) == ["softmaxout"]
    assert predict.external_input[0] == "data"
    init = load_net(dest / "init_net.pb")
    assert set(init.external_output) == set(predict.external_input[1:])


def test_reload_gives_identical_outputs(exported, trained):
    dest, _ = exported
    train, weights = trained
    reloaded = zoo.load(dest)
    x = (np.random.RandomState(0).rand(2, 3, 64, 64).astype(np.float32) - 0.5) * 200
    want = run_deploy(train.finetune.deploy, x, weights)
    got = run_deploy(reloaded, x)
    np.testing.assert_array_equal(got, want)
    assert got.shape == (2, 101, 1, 1)
    for name in ("conv10_w", "fire4/expand3x3_w"):
        np.testing.assert_array_equal(reloaded.weights()[name], weights[name])


def test_export_from_the_current_workspace(trained, tmp_path):
    train, weights = trained
    for name, value in weights.items():
        workspace.FeedBlob(name, value)
    model = deploy.to_caffe2(train.finetune.deploy, tmp_path / "ws")
    np.testing.assert_array_equal(model.weights()["conv10_b"], weights["conv10_b"])


def test_missing_trained_blob_is_named(trained, tmp_path):
    train, weights = trained
    partial = {k: v for k, v in weights.items() if k != "conv10_w"}
    with pytest.raises(deploy.ExportError, match="conv10_w"):
        deploy.to_caffe2(train, tmp_path / "x", weights=partial)
    with pytest.raises(deploy.ExportError, match="current workspace lacks"):
        deploy.to_caffe2(train, tmp_path / "y")


def test_wrong_number_of_labels(trained, tmp_path):
    train, weights = trained
    with pytest.raises(deploy.ExportError, match="3 class names for a 101-way model"):
        deploy.to_caffe2(train, tmp_path / "x", weights=weights, class_names=["a", "b", "c"])


def test_unfrozen_spatial_bn_exports_in_test_mode_with_its_statistics(tmp_path):
    from tests.support.zoo_models import bn_zoo_model
    train, weights = fine_tuned(zoo_model=bn_zoo_model(), num_classes=5, unfreeze_from="c1", size=12)
    assert not np.allclose(weights["bn1_rm"], bn_zoo_model().weights()["bn1_rm"])  # trained stats
    model = deploy.to_caffe2(train, tmp_path / "bn", weights=weights)
    bns = [op for op in model.predict_net.op if op.type == "SpatialBN"]
    assert bns and all(len(op.output) == 1 for op in bns)
    x = np.random.RandomState(1).randn(3, 3, 12, 12).astype(np.float32)
    np.testing.assert_array_equal(run_deploy(model, x), run_deploy(train.finetune.deploy, x, weights))


def test_export_model_from_a_training_checkpoint(trained, tmp_path):
    from tests.support.export_helpers import ZOO

    from food101.checkpoint import save_checkpoint
    train, weights = trained
    blobs = dict(weights, conv10_w_momentum=np.zeros((101, 512, 1, 1), np.float32))
    ckpt = save_checkpoint(str(tmp_path / "run_iter_2.ckpt"), iteration=2,
                           blobs={k: __import__("torch").from_numpy(v) for k, v in blobs.items()})
    result = export.export_model(str(tmp_path / "out"), formats=("caffe2",), model_dir=ZOO,
                                 checkpoint=str(tmp_path))
    assert "iteration 2" in result["note"] and ckpt in result["note"]
    model = zoo.load(result["caffe2"])
    assert model.num_classes == 101 and model.class_names[-1] == "waffles"
    for name in ("conv10_w", "conv1_w"):
        np.testing.assert_array_equal(model.weights()[name], weights[name])
