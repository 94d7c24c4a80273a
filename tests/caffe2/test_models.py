"""caffe2.models: the ResNet builders give real Caffe2's nets op for op (models/ fixtures from
tools/gen_model_fixtures.py), a built ResNet runs, and models.<zoo model> needs a verified
download."""
import numpy as np
import pytest
from google.protobuf import text_format

from food101.caffe2 import core, model_helper, workspace
from food101.caffe2.models import download, resnet
from food101.caffe2.proto import caffe2_pb2
from tests.support import reference_path

CASES = {
    "resnet50_train": lambda m: resnet.create_resnet50(m, "data", 3, 10, label="label"),
    "resnet50_test": lambda m: resnet.create_resnet50(m, "data", 3, 10, is_test=True, no_bias=1),
    "resnet_32x32": lambda m: resnet.create_resnet_32x32(m, "data", 3, num_groups=1, num_labels=10),
    "resnext18": lambda m: resnet.create_resnext(m, "data", 3, 5, num_layers=18, num_groups=2,
                                                num_width_per_group=8, no_loss=True),
}


def _reference(name, suffix):
    with open(reference_path("models", "%s_%s.pbtxt" % (name, suffix))) as fh:
        return text_format.Parse(fh.read(), caffe2_pb2.NetDef())


@pytest.mark.parametrize("name", sorted(CASES))
def test_builders_match_real_caffe2(name):
    core.Net._net_names_used.clear()
    model = model_helper.ModelHelper(name=name)
    CASES[name](model)
    assert model.net.Proto() == _reference(name, "net")
    assert model.param_init_net.Proto() == _reference(name, "init")
    with open(reference_path("models", name + "_params.txt")) as fh:
        assert [str(p) for p in model.params] == fh.read().split()


def test_resnet_32x32_trains_a_step():
    model = model_helper.ModelHelper(name="r32")
    softmax = resnet.create_resnet_32x32(model, "data", 3, num_groups=1, num_labels=10)
    xent = model.LabelCrossEntropy([softmax, "label"], "xent")
    loss = model.AveragedLoss(xent, "loss")
    model.AddGradientOperators([loss])
    workspace.FeedBlob("data", np.random.RandomState(0).randn(2, 3, 32, 32).astype(np.float32))
    workspace.FeedBlob("label", np.array([1, 7], np.int32))
    workspace.RunNetOnce(model.param_init_net)
    workspace.RunNetOnce(model.net)
    assert workspace.FetchBlob("softmax").shape == (2, 10)
    assert np.isfinite(workspace.FetchBlob("conv1_w_grad")).all()


def test_zoo_model_needs_a_verified_download(tmp_path, monkeypatch):
    monkeypatch.setenv("FOOD101_MODELS_DIR", str(tmp_path))
    with pytest.raises(ImportError, match="download -i squeezenet"):
        from food101.caffe2.models import squeezenet  # noqa: F401
    (tmp_path / "squeezenet").mkdir()
    for name in ("init_net.pb", "predict_net.pb"):
        (tmp_path / "squeezenet" / name).write_bytes(b"not the zoo's bytes")
    with pytest.raises(ImportError, match="unverified"):
        download.installed_model("squeezenet")
