"""Exports stay consistent with how the model was trained (#16 item 6).

Reproduced by the issue: the ONNX input was fixed at 227x227 while the demo trains at 56
(onnxruntime rejected 56x56); re-exporting a deploy folder rewrote preprocess.json to crop 227
(evaluate then failed, predict silently used 227); exported files were 0600."""
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from food101 import zoo
from food101.interop import export
from tests.support import TOOLS
from tests.support.deploy_folder import CLASSES, standin_deploy


@pytest.fixture(scope="module")
def deploy_56(tmp_path_factory):
    """A 6-class deploy folder trained (here: initialised) at 56-pixel crops, as the demo's."""
    return standin_deploy(str(tmp_path_factory.mktemp("deploy")), crop=56)


def test_deploy_folder_records_the_trained_crop(deploy_56):
    with open(os.path.join(deploy_56, "value_info.json")) as f:
        assert json.load(f)["data"][1] == [1, 3, 56, 56]
    assert zoo.load(deploy_56).input_shape == (1, 3, 56, 56)


def test_reexport_keeps_preprocessing_and_onnx_runs_at_the_trained_crop(deploy_56, tmp_path):
    old_umask = os.umask(0o022)
    try:
        out = str(tmp_path / "again")
        result = subprocess.run([sys.executable, os.path.join(TOOLS, "export.py"), "--model",
                                 deploy_56, "--out", out], capture_output=True, text=True,
                                timeout=300)
    finally:
        os.umask(old_umask)
    assert result.returncode == 0, result.stderr
    with open(os.path.join(deploy_56, "preprocess.json")) as f:
        before = json.load(f)
    with open(os.path.join(out, "preprocess.json")) as f:
        after = json.load(f)
    assert after == before and after["crop"] == 56 and after["mean_bgr"] == [100.0, 110.0, 120.0]
    for name in os.listdir(out):
        mode = stat.S_IMODE(os.stat(os.path.join(out, name)).st_mode)
        assert mode == 0o644, (name, oct(mode))

    import onnxruntime
    session = onnxruntime.InferenceSession(os.path.join(out, "model.onnx"))
    x = session.get_inputs()[0]
    assert x.shape == ["N", 3, "H", "W"]          # dynamic batch and size (global pooling)
    reference = zoo.load(deploy_56)
    for n, size in ((1, 56), (3, 56), (2, 72)):
        batch = np.random.default_rng(n).normal(0, 50, (n, 3, size, size)).astype(np.float32)
        probs = session.run(None, {x.name: batch})[0]
        assert probs.shape == (n, len(CLASSES), 1, 1)
    from tests.support.export_helpers import run_deploy
    batch = np.random.default_rng(0).normal(0, 50, (2, 3, 56, 56)).astype(np.float32)
    np.testing.assert_allclose(session.run(None, {x.name: batch})[0],
                               run_deploy(reference, batch), atol=1e-4)


def test_fixed_size_graph_keeps_fixed_dims(tmp_path):
    """A net whose FC reads a fixed number of features cannot take another size: H/W stay."""
    from food101.caffe2 import brew, model_helper, workspace
    m = model_helper.ModelHelper(name="fixed")
    brew.conv(m, "data", "c", 3, 4, kernel=3)
    brew.fc(m, "c", "fc", 4 * 6 * 6, 5)
    brew.softmax(m, "fc", "prob")
    workspace.RunNetOnce(m.param_init_net)
    predict = m.net.Proto()
    zm = zoo.ZooModel(m.param_init_net.Proto(), predict, "data", (1, 3, 8, 8), np.float32,
                      output_name="prob")
    proto = export.to_onnx(zm, str(tmp_path / "f.onnx"),
                           weights={p: workspace.FetchBlob(p) for p in ("c_w", "c_b", "fc_w", "fc_b")})
    dims = [d.dim_value or d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 3, 8, 8]
