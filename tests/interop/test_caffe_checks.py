"""What Caffe itself refuses, the translator refuses too, before any op runs: a caffemodel blob
whose shape the prototxt does not imply, an empty blob, a bottom nobody produces; and the
command line says what it needs instead of a traceback (an empty prototxt, --input_dims)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from food101.interop.caffe import caffe_pb2, netfile, translator
from tests.interop import caffe_fixtures as cf
from tests.support import REPO

SQUEEZENET = cf.net_path("squeezenet_v1.1/deploy.prototxt")

TINY = """name: "tiny"
input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "fire2/squeeze1x1" type: "Convolution" bottom: "conv1" top: "fire2/squeeze1x1"
        convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "fc" type: "InnerProduct" bottom: "fire2/squeeze1x1" top: "fc"
        inner_product_param { num_output: 5 } }
"""


def _weights(**layers):
    return cf.caffemodel(layers)


def _tiny(text=TINY):
    return netfile.parse_text(text, caffe_pb2.NetParameter())


def _run_cli(args, cwd):
    result = subprocess.run([sys.executable, os.path.join(REPO, "tools", "translate_caffe.py")] + args,
                            capture_output=True, text=True, cwd=str(cwd),
                            env=dict(os.environ, PYTHONPATH=REPO))
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_a_blob_of_another_shape_than_the_prototxt_implies_is_refused_naming_both(tmp_path):
    spec, _ = cf.case("squeezenet_v1_1")
    model = cf.write_caffemodel(str(tmp_path / "sq.caffemodel"), spec)
    text = open(SQUEEZENET).read().replace("num_output: 1000", "num_output: 101")
    with pytest.raises(netfile.CaffeFormatError,
                       match=r"layer 'conv10' \(Convolution\): caffemodel blob 0 \(weights\) has "
                             r"shape \[1000, 512, 1, 1\] but the prototxt implies \[101, 512, 1, 1\] "
                             r"\(num_output 101, kernel 1x1, 512 input channels\); Caffe refuses"):
        translator.translate(netfile.parse_text(text, caffe_pb2.NetParameter()),
                             netfile.read_caffemodel(model))
    # the command line: exit 2, no output files
    (tmp_path / "d101.prototxt").write_text(text)
    result = _run_cli(["d101.prototxt", "sq.caffemodel", "--init_net", "o.pb", "--predict_net",
                       "p.pb"], tmp_path)
    assert result.returncode == 2 and "conv10" in result.stderr and "[1000, 512, 1, 1]" in result.stderr
    assert not (tmp_path / "o.pb").exists()


def test_input_channels_bias_and_inner_product_shapes_are_checked():
    rng = np.random.RandomState(0)
    good = dict(conv1=[rng.randn(4, 3, 3, 3), rng.randn(4)],
                **{"fire2/squeeze1x1": [rng.randn(2, 4, 1, 1), rng.randn(2)]},
                fc=[rng.randn(5, 2 * 6 * 6), rng.randn(5)])
    translator.translate(_tiny(), _weights(**good))  # the right shapes pass
    for layer, index, array, message in (
            ("conv1", 0, rng.randn(4, 1, 3, 3), r"blob 0 \(weights\) has shape \[4, 1, 3, 3\] but the "
                                                r"prototxt implies \[4, 3, 3, 3\]"),
            ("conv1", 1, rng.randn(5), r"blob 1 \(bias\) has shape \[5\] but the prototxt implies \[4\]"),
            ("fc", 0, rng.randn(5, 10), r"'fc' \(InnerProduct\).*\[5, 10\].*implies \[5, 72\]")):
        bad = {k: list(v) for k, v in good.items()}
        bad[layer][index] = array
        with pytest.raises(netfile.CaffeFormatError, match=message):
            translator.translate(_tiny(), _weights(**bad))


def test_a_zero_size_blob_is_refused_naming_the_layer(tmp_path):
    rng = np.random.RandomState(0)
    empty = _weights(conv1=[np.zeros((4, 0, 3, 3)), rng.randn(4)])
    with pytest.raises(netfile.CaffeFormatError,
                       match=r"layer 'conv1' \(Convolution\): caffemodel blob 0 has shape "
                             r"\[4, 0, 3, 3\] and no values"):
        translator.translate(_tiny(), empty)


def test_a_misspelled_bottom_is_refused_with_a_did_you_mean():
    text = TINY.replace('bottom: "fire2/squeeze1x1"', 'bottom: "fire2/squeeze1x2"')
    with pytest.raises(netfile.CaffeFormatError,
                       match=r"layer 'fc' \(InnerProduct\): bottom 'fire2/squeeze1x2' \(bottom 0\) "
                             r"is not produced by any earlier layer nor an input; did you mean "
                             r"'fire2/squeeze1x1'\?"):
        translator.translate(_tiny(text))
    # a later layer's top does not count: Caffe builds the net in order
    late = TINY.replace('bottom: "conv1" top: "fire2', 'bottom: "fc" top: "fire2')
    with pytest.raises(netfile.CaffeFormatError, match="bottom 'fc'.*not produced"):
        translator.translate(_tiny(late))


def test_command_line_empty_prototxt_and_input_dims_say_what_is_needed(tmp_path):
    spec, _ = cf.case("squeezenet_v1_1")
    cf.write_caffemodel(str(tmp_path / "sq.caffemodel"), spec)
    (tmp_path / "empty.prototxt").write_text("")
    result = _run_cli(["empty.prototxt", "sq.caffemodel"], tmp_path)
    assert result.returncode == 2 and "empty.prototxt has no layers" in result.stderr
    result = _run_cli([SQUEEZENET, "sq.caffemodel", "--remove_legacy_pad", "--input_dims", "227",
                       "227"], tmp_path)
    assert result.returncode == 2
    assert "--input_dims 227 227: give the input blob's 4 dimensions N C H W" in result.stderr
    help_text = _run_cli(["--help"], tmp_path).stdout
    assert "N C H W" in help_text


def test_a_translated_backbone_names_its_caffe_layers_in_op_errors(tmp_path):
    """--zoo-dir with a Caffe folder: an op that fails (e.g. GoogLeNet's pool5/7x7_s1 on a crop
    too small for it) is named by its Caffe layer."""
    from food101.caffe2.errors import Caffe2Error
    from food101.interop.backbone import from_caffe
    from food101.zoo import _nets
    spec, _ = cf.case("googlenet")
    model = from_caffe(cf.net_path("bvlc_googlenet/deploy.prototxt"),
                       cf.write_caffemodel(str(tmp_path / "gn.caffemodel"), spec))
    names = {op.name for op in model.predict_net.op}
    assert {"conv1/7x7_s2", "pool5/7x7_s1"} <= names
    blobs = _nets.run_in_private_workspace([model.init_net])
    blobs[model.input_name] = np.zeros((1, 3, 56, 56), np.float32)
    with pytest.raises(Caffe2Error, match="AveragePool 'pool5/7x7_s1'"):
        _nets.run_in_private_workspace([model.predict_net], blobs)
