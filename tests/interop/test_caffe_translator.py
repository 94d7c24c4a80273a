"""The Caffe translator against real Caffe2's caffe_translator (fixtures made by
tests/data/caffe_reference/tools/make_translator_fixtures.py in the Caffe2 environment) and the
Model Zoo SqueezeNet it produced; the schema on real Caffe files; clear refusals."""
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from food101.caffe2.utils import ArgsToDict
from food101.caffe2 import caffe_translator
from food101.caffe2.proto import load_net
from food101.caffe2.workspace import Workspace
from food101.interop.caffe import caffe_pb2, netfile, translator
from food101.zoo import _nets
from tests.interop import caffe_fixtures as cf
from tests.support import REPO, ZOO

CASES = {"squeezenet_v1_1": "squeezenet_v1.1/deploy.prototxt",
         "googlenet": "bvlc_googlenet/deploy.prototxt"}


def run_nets(init, predict, feeds):
    blobs = _nets.run_in_private_workspace([init])
    blobs.update(feeds)
    return _nets.run_in_private_workspace([predict], blobs)


def fetch(blobs, key):
    if key.endswith("_small"):
        return _nets.to_numpy(blobs[key[:-len("_small")]])[:, :8, :4, :4]
    return _nets.to_numpy(blobs[key])


def op_tuple(op):
    return op.type, list(op.input), list(op.output), ArgsToDict(op.arg)


@pytest.fixture(scope="module", params=sorted(CASES))
def translated(request, tmp_path_factory):
    """The command line's main() (test_bad_files runs it as `python -m`) on the case's
    random-weight caffemodel."""
    name = request.param
    spec, outputs = cf.case(name)
    tmp = tmp_path_factory.mktemp(name)
    model = cf.write_caffemodel(str(tmp / "weights.caffemodel"), spec)
    init_path, predict_path = str(tmp / "init_net.pb"), str(tmp / "predict_net.pb")
    assert caffe_translator.main([cf.net_path(CASES[name]), model, "--init_net", init_path,
                                  "--predict_net", predict_path]) == 0
    assert os.path.exists(predict_path + "txt")
    return name, spec, outputs, load_net(init_path), load_net(predict_path)


def test_predict_net_equals_real_caffe2_translation_op_for_op(translated):
    name, _, _, _, predict = translated
    real = load_net(os.path.join(cf.FIXTURES, name + "_predict.pb"))
    assert len(predict.op) == len(real.op)
    for ours, theirs in zip(predict.op, real.op):
        assert op_tuple(ours) == op_tuple(theirs)
    assert list(predict.external_input) == list(real.external_input)
    assert list(predict.external_output) == list(real.external_output)


def test_outputs_equal_real_caffe2(translated):
    _, spec, outputs, init, predict = translated
    blobs = run_nets(init, predict, {spec["input_blob"]: cf.case_input(spec)})
    for key, expected in outputs.items():
        got = fetch(blobs, key)
        assert got.shape == expected.shape, key
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max(),
                                   err_msg=key)


# Arguments that spell a default or only steer real Caffe2's engine choice.
_DEFAULT_ARGS = {"order": "NCHW", "stride": 1, "pad": 0, "cudnn_exhaustive_search": 0}


def _semantic(op, rename):
    args = {k: v for k, v in ArgsToDict(op.arg).items() if _DEFAULT_ARGS.get(k, object()) != v}
    if args.get("global_pooling"):  # the window is the image: kernel / legacy padding are moot
        args.pop("kernel", None)
        args.pop("legacy_pad", None)
    if op.type == "Concat":
        args.setdefault("axis", 1)
    return (op.type, [rename.get(b, b) for b in op.input], rename.get(op.output[0], op.output[0]),
            args)


def test_squeezenet_deploy_translates_to_the_model_zoo_predict_net():
    """The zoo's predict_net.pb is Caffe2's translation of this deploy.prototxt: same ops, blobs
    and arguments (up to spelled-out defaults; the zoo names the output `softmaxout`)."""
    spec, _ = cf.case("squeezenet_v1_1")
    net = netfile.read_net(cf.net_path(CASES["squeezenet_v1_1"]))
    weights = cf.caffemodel(cf.draw(spec["seed"], spec["params"]))
    predict, params = caffe_translator.TranslateModel(net, weights, is_test=True)
    zoo = load_net(os.path.join(ZOO, "predict_net.pb"))
    rename = {"prob": "softmaxout"}
    assert [_semantic(op, rename) for op in predict.op] == [_semantic(op, {}) for op in zoo.op]
    assert [p.name for p in params.protos] == list(zoo.external_input)[1:]


def test_legacy_blob_dims_and_v1_layers_read_like_the_new_forms(tmp_path):
    spec, _ = cf.case("squeezenet_v1_1")
    new = netfile.read_caffemodel(cf.write_caffemodel(str(tmp_path / "a.caffemodel"), spec))
    old = netfile.read_caffemodel(cf.write_caffemodel(str(tmp_path / "b.caffemodel"), spec,
                                                      legacy_blobs=True))
    conv = [l for l in old.layer if l.name == "conv10"][0]
    assert not conv.blobs[0].HasField("shape") and conv.blobs[0].num == 1000
    for a, b in zip(new.layer, old.layer):
        for x, y in zip(a.blobs, b.blobs):
            xa, ya = netfile.blob_array(x), netfile.blob_array(y)
            np.testing.assert_array_equal(xa, ya.reshape(xa.shape))
    # the same weights as a V1 (`layers`) caffemodel translate to the same parameters
    v1 = caffe_pb2.NetParameter(name="v1")
    for layer in new.layer:
        old_layer = v1.layers.add(name=layer.name, type=caffe_pb2.V1LayerParameter.CONVOLUTION)
        old_layer.blobs.extend(layer.blobs)
    path = str(tmp_path / "v1.caffemodel")
    with open(path, "wb") as f:
        f.write(v1.SerializeToString())
    upgraded = netfile.read_caffemodel(path)
    assert [l.name for l in upgraded.layer] == [l.name for l in new.layer]
    assert upgraded.layer[0].type == "Convolution"
    net = netfile.read_net(cf.net_path(CASES["squeezenet_v1_1"]))
    _, p1 = caffe_translator.TranslateModel(net, new, is_test=True)
    _, p2 = caffe_translator.TranslateModel(net, upgraded, is_test=True)
    assert p1 == p2


def test_v1_prototxt_is_upgraded():
    text = """name: "old" input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
    layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv" blobs_lr: 1 blobs_lr: 2
             weight_decay: 1 weight_decay: 0
             convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
    layers { name: "relu" type: RELU bottom: "conv" top: "conv" }
    layers { name: "pool" type: POOLING bottom: "conv" top: "pool"
             pooling_param { pool: AVE kernel_size: 2 stride: 2 } }"""
    net = netfile.upgrade_v1(netfile.parse_text(text, caffe_pb2.NetParameter()))
    assert [l.type for l in net.layer] == ["Convolution", "ReLU", "Pooling"]
    t = translator.translate(net)
    assert [op.type for op in t.ops] == ["Conv", "Relu", "AveragePool"]
    assert (t.params["conv_w"].lr_mult, t.params["conv_b"].lr_mult) == (1.0, 2.0)
    assert t.params["conv_b"].decay_mult == 0.0
    assert t.params["conv_w"].shape == (4, 3, 3, 3)
    blobs = run_nets(t.init_net(), t.predict_net(), {"data": np.ones((1, 3, 8, 8), np.float32)})
    assert tuple(blobs["pool"].shape) == (1, 4, 3, 3)  # Caffe's ceil mode: 6 -> 3


def test_every_real_net_translates_in_both_phases():
    nets = {"squeezenet_v1.1/train_val.prototxt": None, "bvlc_googlenet/train_val.prototxt": None,
            "seed_bn_frozen/train_val.prototxt": None,
            "seed_fneishnet/train_val.prototxt": {"data": [1, 1, 24, 15]}}
    for path, shapes in nets.items():
        net = netfile.read_net(cf.net_path(path))
        train = translator.translate(net, phase="TRAIN", data_shapes=shapes)
        test = translator.translate(net, phase="TEST", data_shapes=shapes)
        assert train.losses and test.losses, path
        assert [l.name for l in train.data_layers] != [] and train.data_layers[0].include[0].phase \
            == caffe_pb2.TRAIN
        assert test.data_layers[0].include[0].phase == caffe_pb2.TEST
    google = translator.translate(netfile.read_net(cf.net_path("bvlc_googlenet/train_val.prototxt")),
                                  phase="TRAIN")
    assert [(b, round(w, 3)) for b, w in google.losses] == [
        ("loss1/loss1", 0.3), ("loss2/loss2", 0.3), ("loss3/loss3", 1.0)]
    assert google.params["conv1/7x7_s2_b"].lr_mult == 2.0
    assert google.params["conv1/7x7_s2_b"].decay_mult == 0.0


def test_fork_field_in_transform_param_is_ignored_with_a_warning_naming_layer_and_field(caplog):
    with caplog.at_level(logging.WARNING):
        net = netfile.read_net(cf.net_path("seed_bn_frozen/train_val.prototxt"))
    messages = [r.getMessage() for r in caplog.records]
    assert any("layer 'data'" in m and "'color'" in m and "ignored" in m for m in messages)
    assert net.layer[0].transform_param.crop_size == 32


def test_unknown_field_elsewhere_is_refused_naming_the_layer_and_field():
    text = 'layer { name: "c1" type: "Convolution" convolution_param { num_output: 2 tricky: 3 } }'
    with pytest.raises(netfile.CaffeFormatError, match=r"layer 'c1'.*'tricky'.*refused"):
        netfile.parse_text(text, caffe_pb2.NetParameter(), "net.prototxt")


def test_unknown_layer_type_is_refused_naming_the_layer():
    text = ('input: "data" input_shape { dim: 1 dim: 3 dim: 4 dim: 4 } '
            'layer { name: "roi" type: "ROIAlign" bottom: "data" top: "roi" }')
    net = netfile.parse_text(text, caffe_pb2.NetParameter())
    with pytest.raises(netfile.CaffeFormatError, match=r"layer 'roi' has type 'ROIAlign'.*refused"):
        translator.translate(net)


def test_unsupported_known_field_is_refused():
    text = ('input: "data" input_shape { dim: 1 dim: 3 dim: 4 dim: 4 } layer { name: "p" '
            'type: "Pooling" bottom: "data" top: "p" pooling_param { pool: STOCHASTIC kernel_size: 2 } }')
    with pytest.raises(netfile.CaffeFormatError, match="layer 'p'.*STOCHASTIC"):
        translator.translate(netfile.parse_text(text, caffe_pb2.NetParameter()))


def test_bad_files_give_clear_errors(tmp_path):
    spec, _ = cf.case("squeezenet_v1_1")
    model = cf.write_caffemodel(str(tmp_path / "w.caffemodel"), spec)
    with open(model, "rb") as f:
        data = f.read()
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(netfile.CaffeFormatError, match="cut.caffemodel.*truncated"):
        netfile.read_caffemodel(str(cut))
    with pytest.raises(netfile.CaffeFormatError, match="cannot read"):
        netfile.read_net(str(tmp_path / "missing.prototxt"))
    result = subprocess.run(
        [sys.executable, "-m", "food101.caffe2.caffe_translator",
         cf.net_path(CASES["squeezenet_v1_1"]), str(cut)],
        capture_output=True, text=True, cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 2 and "truncated" in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "predict_net.pb")


# ------------------------------------------------------------- layers past Caffe2's translator
def _numpy_net(text, feeds, weights=None):
    net = netfile.parse_text(text, caffe_pb2.NetParameter())
    pretrained = cf.caffemodel(weights) if weights else None
    t = translator.translate(net, pretrained)
    return run_nets(t.init_net(), t.predict_net(), feeds), t


def test_eltwise_power_slice_relu_slope_against_numpy():
    rng = np.random.RandomState(0)
    a, b = rng.randn(2, 4, 3, 3).astype(np.float32), rng.randn(2, 4, 3, 3).astype(np.float32)
    text = """input: "a" input_shape { dim: 2 dim: 4 dim: 3 dim: 3 }
      input: "b" input_shape { dim: 2 dim: 4 dim: 3 dim: 3 }
      layer { name: "s" type: "Eltwise" bottom: "a" bottom: "b" top: "s"
              eltwise_param { operation: SUM coeff: 0.5 coeff: -2 } }
      layer { name: "p" type: "Eltwise" bottom: "a" bottom: "b" bottom: "a" top: "p"
              eltwise_param { operation: PROD } }
      layer { name: "m" type: "Eltwise" bottom: "a" bottom: "b" top: "m" eltwise_param { operation: MAX } }
      layer { name: "w" type: "Power" bottom: "b" top: "w" power_param { power: 2 scale: 3 shift: 1 } }
      layer { name: "sl" type: "Slice" bottom: "a" top: "sl1" top: "sl2" top: "sl3"
              slice_param { axis: 1 slice_point: 1 slice_point: 3 } }
      layer { name: "r" type: "ReLU" bottom: "b" top: "r" relu_param { negative_slope: 0.1 } }"""
    blobs, _ = _numpy_net(text, {"a": a, "b": b})
    np.testing.assert_allclose(fetch(blobs, "s"), 0.5 * a - 2 * b, rtol=1e-6)
    np.testing.assert_allclose(fetch(blobs, "p"), a * b * a, rtol=1e-6)
    np.testing.assert_allclose(fetch(blobs, "m"), np.maximum(a, b))
    np.testing.assert_allclose(fetch(blobs, "w"), (1 + 3 * b) ** 2, rtol=1e-5)
    np.testing.assert_array_equal(fetch(blobs, "sl2"), a[:, 1:3])
    np.testing.assert_array_equal(fetch(blobs, "sl3"), a[:, 3:])
    np.testing.assert_allclose(fetch(blobs, "r"), np.where(b > 0, b, 0.1 * b), rtol=1e-6)


def test_batchnorm_scale_factor_scale_layer_and_deconvolution_against_numpy():
    rng = np.random.RandomState(1)
    x = rng.randn(2, 3, 4, 4).astype(np.float32)
    mean, var, factor = rng.randn(3), rng.rand(3) + 0.5, np.array([4.0])
    gamma, beta = rng.randn(3), rng.randn(3)
    wd = rng.randn(3, 2, 3, 3).astype(np.float32)
    text = """input: "x" input_shape { dim: 2 dim: 3 dim: 4 dim: 4 }
      layer { name: "bn" type: "BatchNorm" bottom: "x" top: "bn" batch_norm_param { eps: 0.001 } }
      layer { name: "sc" type: "Scale" bottom: "bn" top: "bn" scale_param { bias_term: true } }
      layer { name: "up" type: "Deconvolution" bottom: "x" top: "up"
              convolution_param { num_output: 2 kernel_size: 3 stride: 2 pad: 1 bias_term: false } }"""
    blobs, t = _numpy_net(text, {"x": x}, {"bn": [mean * factor, var * factor, factor],
                                           "sc": [gamma, beta], "up": [wd]})
    c = (slice(None), None, None)
    expected = (x - mean[c]) / np.sqrt(var[c] + 1e-3) * gamma[c] + beta[c]
    np.testing.assert_allclose(fetch(blobs, "bn"), expected, rtol=1e-4, atol=1e-5)

    up = torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(wd), stride=2, padding=1)
    np.testing.assert_allclose(fetch(blobs, "up"), up.numpy(), rtol=1e-5, atol=1e-5)
    assert tuple(fetch(blobs, "up").shape) == (2, 2, 7, 7)  # (4 - 1) * 2 - 2 + 3
    assert t.params["bn_mean"].lr_mult == 0 and t.params["bnscale_w"].lr_mult == 1


def test_input_mean_is_subtracted_by_a_first_op():
    text = """input: "data" input_shape { dim: 1 dim: 3 dim: 2 dim: 2 }
      layer { name: "r" type: "ReLU" bottom: "data" top: "r" }"""
    net = netfile.parse_text(text, caffe_pb2.NetParameter())
    predict, params = caffe_translator.TranslateModel(net, caffe_pb2.NetParameter(), is_test=True,
                                                      input_mean=[1.0, 2.0, 3.0])
    assert [op.type for op in predict.op] == ["Sub", "Relu"]
    init = caffe_translator.ConvertTensorProtosToInitNet(params, "data")
    x = np.full((1, 3, 2, 2), 2.0, np.float32)
    blobs = run_nets(init, predict, {"data": x})
    np.testing.assert_allclose(fetch(blobs, "r")[0, :, 0, 0], [1.0, 0.0, 0.0])


def test_remove_legacy_pad_keeps_the_outputs():
    spec, outputs = cf.case("squeezenet_v1_1")
    weights = cf.caffemodel(cf.draw(spec["seed"], spec["params"]))
    net = netfile.read_net(cf.net_path(CASES["squeezenet_v1_1"]))
    predict, params = caffe_translator.TranslateModel(net, weights, is_test=True,
                                                      remove_legacy_pad=True,
                                                      input_dims=spec["input"])
    assert not any(a.name == "legacy_pad" for op in predict.op for a in op.arg)
    init = caffe_translator.ConvertTensorProtosToInitNet(params, "data")
    blobs = run_nets(init, predict, {"data": cf.case_input(spec)})
    np.testing.assert_allclose(fetch(blobs, "prob"), outputs["prob"], rtol=1e-4, atol=1e-6)
    assert Workspace  # the translation ran in private workspaces only
