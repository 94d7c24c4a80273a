"""The stand-in zoo SqueezeNet fine-tuned here and exported both Caffe2 ways gives real Caffe2's
softmax (committed: serialization/squeezenet_real_softmax.npz, real Caffe2 running the files
this export writes; tools/squeezenet_crosscheck.py makes both halves)."""
import importlib.util
import os
import subprocess

import numpy as np
import pytest

from food101.caffe2 import workspace
from food101.caffe2.predictor import predictor_exporter
from food101.caffe2.proto import load_net
from tests.support import real_caffe2_python, reference_path

TOOL = reference_path("tools", "squeezenet_crosscheck.py")
_spec = importlib.util.spec_from_file_location("squeezenet_crosscheck", TOOL)
crosscheck = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(crosscheck)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("squeezenet_export"))
    workspace.ResetAll()
    softmax, output = crosscheck.export(out)
    return out, softmax, output


def test_finetuned_export_gives_real_caffe2s_softmax(exported):
    out, softmax, _ = exported
    real = np.load(reference_path("serialization", "squeezenet_real_softmax.npz"))
    assert softmax.shape == (crosscheck.BATCH, crosscheck.NUM_CLASSES, 1, 1)
    np.testing.assert_allclose(softmax, real["mobile"], atol=1e-5)
    np.testing.assert_allclose(softmax, real["predictor"], atol=1e-5)


def test_both_exports_reload_here_with_the_same_outputs(exported):
    out, softmax, output = exported
    images, _ = crosscheck.batch(7)
    workspace.ResetAll()
    workspace.RunNetOnce(load_net(os.path.join(out, "mobile_init.pb")))
    workspace.FeedBlob("data", images)
    workspace.RunNetOnce(load_net(os.path.join(out, "mobile_predict.pb")))
    np.testing.assert_array_equal(workspace.FetchBlob(output), softmax)
    workspace.ResetAll()
    net = predictor_exporter.prepare_prediction_net(os.path.join(out, "predictor.minidb"), "minidb")
    workspace.FeedBlob("data", images)
    workspace.RunNet(net)
    np.testing.assert_array_equal(workspace.FetchBlob(output), softmax)


@pytest.mark.slow
@pytest.mark.skipif(real_caffe2_python() is None, reason="no real-Caffe2 Python (tools/setup.sh)")
def test_real_caffe2_live_on_this_export(exported):
    out, softmax, _ = exported
    env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python", PYTHONPATH="")
    run = subprocess.run([real_caffe2_python(), TOOL, "predict", out], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    real = np.load(os.path.join(out, "real_caffe2_softmax.npz"))
    np.testing.assert_allclose(softmax, real["mobile"], atol=1e-5)
    np.testing.assert_allclose(softmax, real["predictor"], atol=1e-5)
