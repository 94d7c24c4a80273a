"""food101.zoo.load: the Model Zoo folder format, the summary, and clear errors for bad folders."""
import json
import os
import shutil

import numpy as np
import pytest

from food101 import zoo
from tests.support import REPO, ZOO
from food101.caffe2.errors import ProtobufParseError
from food101.caffe2.proto import load_net, save_net
from food101.caffe2.utils import make_op



@pytest.fixture(scope="module")
def squeezenet():
    return zoo.load(ZOO)


def _copy_zoo(tmp_path, files=("init_net.pb", "predict_net.pb", "value_info.json")):
    folder = tmp_path / "squeezenet"
    folder.mkdir()
    for name in files:
        shutil.copy(os.path.join(ZOO, name), folder / name)
    return folder


def test_load_reads_both_nets_input_and_params(squeezenet):
    m = squeezenet
    assert m.input_name == "data" and m.input_shape == (1, 3, 227, 227)
    assert m.input_dtype == np.float32
    assert m.output_name == "softmaxout"
    assert len(m.predict_net.op) == 66 and len(m.init_net.op) == 52
    assert m.params[:2] == ["conv1_w", "conv1_b"]
    assert m.param_shapes["conv1_w"] == (64, 3, 3, 3)
    assert m.param_shapes["conv10_w"] == (1000, 512, 1, 1)
    assert m.num_classes == 1000
    assert m.num_params == 1235496  # SqueezeNet v1.1
    assert zoo.find_classifier(m.predict_net).output == "conv10"


def test_weights_come_from_the_given_tensor_fills(squeezenet):
    weights = squeezenet.weights()
    assert list(weights) == squeezenet.params
    init = load_net(os.path.join(ZOO, "init_net.pb"))
    first = init.op[0]
    values = [a for a in first.arg if a.name == "values"][0].floats
    np.testing.assert_array_equal(weights[first.output[0]].ravel()[:10], np.asarray(values[:10], np.float32))


def test_summary_is_a_layer_table_with_ceil_mode_shapes(squeezenet):
    text = str(squeezenet)
    lines = text.splitlines()
    assert "blob" in lines[2] and "op" in lines[2] and "output shape" in lines[2] and "params" in lines[2]
    rows = {(r[0], r[1]): r for r in squeezenet.layer_table()}
    assert rows[("pool3", "MaxPool")][2] == (1, 128, 28, 28)
    assert rows[("pool5", "MaxPool")][2] == (1, 256, 14, 14)
    assert rows[("conv1", "Conv")][3] == 64 * 27 + 64
    assert rows[("softmaxout", "Softmax")][2] == (1, 1000, 1, 1)
    assert "1,235,496 parameters" in lines[0]
    assert "softmaxout" in text and "fire9/expand3x3" in text


def test_pbtxt_predict_net_loads_the_same(tmp_path):
    folder = _copy_zoo(tmp_path, ("init_net.pb", "predict_net.pbtxt", "value_info.json"))
    m = zoo.load(folder)
    ref = load_net(os.path.join(ZOO, "predict_net.pb"))
    assert m.predict_net.SerializeToString() == ref.SerializeToString()


@pytest.mark.parametrize("missing", ["init_net.pb", "predict_net.pb", "value_info.json"])
def test_missing_file_is_named(tmp_path, missing):
    files = [f for f in ("init_net.pb", "predict_net.pb", "value_info.json") if f != missing]
    folder = _copy_zoo(tmp_path, files)
    with pytest.raises(zoo.ZooFileMissingError, match=missing.split(".")[0]):
        zoo.load(folder)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        zoo.load(tmp_path / "nowhere")


def test_truncated_init_net_is_a_clear_parse_error(tmp_path):
    folder = _copy_zoo(tmp_path)
    data = (folder / "init_net.pb").read_bytes()
    (folder / "init_net.pb").write_bytes(data[: len(data) // 2])
    with pytest.raises(ProtobufParseError, match=r"init net .*init_net\.pb.*truncated"):
        zoo.load(folder)


def test_non_netdef_file_is_rejected(tmp_path):
    folder = _copy_zoo(tmp_path)
    (folder / "predict_net.pb").write_bytes(b"\x89PNG\r\n\x1a\n not a protobuf at all \xff\xfe")
    with pytest.raises(ProtobufParseError, match=r"predict net .*predict_net\.pb"):
        zoo.load(folder)


def test_init_net_missing_blobs_are_named(tmp_path):
    folder = _copy_zoo(tmp_path)
    init = load_net(folder / "init_net.pb")
    keep = [op for op in init.op if op.output[0] not in ("fire5/expand3x3_w", "conv10_b")]
    del init.op[:]
    init.op.extend(keep)
    save_net(init, str(folder / "init_net.pb"))
    with pytest.raises(zoo.MissingParameterError) as err:
        zoo.load(folder)
    assert "fire5/expand3x3_w" in str(err.value) and "conv10_b" in str(err.value)


def test_value_info_naming_an_unread_input(tmp_path):
    folder = _copy_zoo(tmp_path)
    (folder / "value_info.json").write_text(json.dumps({"image": [1, [1, 3, 227, 227]]}))
    with pytest.raises(zoo.ZooError, match="'image'"):
        zoo.load(folder)


def test_save_and_reload_round_trip(squeezenet, tmp_path):
    out = squeezenet.save(tmp_path / "copy")
    again = zoo.load(out)
    assert again.predict_net.SerializeToString() == squeezenet.predict_net.SerializeToString()
    assert again.param_shapes == squeezenet.param_shapes


# ------------------------------------------------------------------- the stand-in and locate
def test_standin_folder_is_the_fixture_with_a_model_card():
    standin = os.path.join(REPO, "models", "squeezenet_standin")
    for name in ("init_net.pb", "predict_net.pb", "predict_net.pbtxt", "value_info.json"):
        with open(os.path.join(standin, name), "rb") as a, open(os.path.join(ZOO, name), "rb") as b:
            assert a.read() == b.read(), name
    card = open(os.path.join(standin, "README.md")).read().lower()
    assert "stand-in" in card and "not pretrained" in card


def test_checksums_json_matches_the_downloader_table():
    path = os.path.join(REPO, "models", "squeezenet", "checksums.json")
    with open(path) as fh:
        files = json.load(fh)["files"]
    assert files == zoo.download.KNOWN_CHECKSUMS["squeezenet"]
    assert files["init_net.pb"]["size"] == 6181001
    assert files["predict_net.pb"]["sha256"].startswith("d20be00e")


def _models_root(tmp_path, real_files):
    root = tmp_path / "models"
    shutil.copytree(os.path.join(REPO, "models", "squeezenet_standin"), root / "squeezenet_standin")
    real = root / "squeezenet"
    real.mkdir(parents=True)
    checksums = {}
    for name, data in real_files.items():
        (real / name).write_bytes(data)
        checksums[name] = {"size": len(data), "sha256": __import__("hashlib").sha256(data).hexdigest()}
    return root, real, checksums


def test_locate_falls_back_to_the_standin_and_says_so(tmp_path):
    root, real, _ = _models_root(tmp_path, {})
    shutil.copy(os.path.join(REPO, "models", "squeezenet", "checksums.json"), real / "checksums.json")
    where = zoo.locate_squeezenet(root)
    assert where.is_standin and where.folder.endswith("squeezenet_standin")
    assert "init_net.pb is missing" in where.note and "stand-in" in where.note.lower()
    model = where.load()
    assert model.is_standin and "STAND-IN" in model.summary()


def test_locate_prefers_verified_real_files(tmp_path):
    files = {n: open(os.path.join(ZOO, n), "rb").read() for n in ("init_net.pb", "predict_net.pb")}
    root, real, checksums = _models_root(tmp_path, files)
    shutil.copy(os.path.join(ZOO, "value_info.json"), real / "value_info.json")
    checksums["value_info.json"] = None
    (real / "checksums.json").write_text(json.dumps({"files": checksums}))
    where = zoo.locate_squeezenet(root)
    assert not where.is_standin and where.folder == str(real)
    assert not where.load().is_standin
    # a corrupted real file no longer verifies: back to the stand-in, with the reason
    data = bytearray(files["predict_net.pb"])
    data[100] ^= 0xFF
    (real / "predict_net.pb").write_bytes(bytes(data))
    where = zoo.locate_squeezenet(root)
    assert where.is_standin and "SHA-256" in where.note


def test_an_input_placeholder_in_the_init_net_is_not_a_param(tmp_path):
    folder = _copy_zoo(tmp_path)
    init = load_net(folder / "init_net.pb")
    init.op.append(make_op("ConstantFill", [], ["data"], shape=[1, 3, 227, 227], value=0.0))
    save_net(init, str(folder / "init_net.pb"))
    m = zoo.load(folder)
    assert "data" not in m.params and len(m.params) == 52
