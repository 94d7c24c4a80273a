"""The Caffe2 tutorials' flows (Toy_Regression, Python_Op, create_your_own_dataset, MNIST with
Checkpoint + predictor_exporter, CIFAR10 with mobile_exporter) run here and match real Caffe2
iteration by iteration: tools/tutorial_flows.py is one script for both runtimes, and
tutorials/real_caffe2.json is what real Caffe2 printed running it."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.support import REPO, reference_path

TOOL = reference_path("tools", "tutorial_flows.py")


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("flows") / "food101.json")
    run = subprocess.run([sys.executable, TOOL, out, "--food101"], env=dict(os.environ, PYTHONPATH=REPO),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    with open(out) as fh:
        return json.load(fh)


with open(reference_path("tutorials", "real_caffe2.json")) as _fh:
    REAL = json.load(_fh)


@pytest.mark.parametrize("flow", sorted(REAL))
def test_flow_matches_real_caffe2(ours, flow):
    for key, expected in REAL[flow].items():
        got = ours[flow][key]
        if isinstance(expected, str) or (isinstance(expected, list) and expected
                                         and isinstance(expected[0], str)):
            assert got == expected, (flow, key)
        else:
            np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(expected, dtype=float),
                                       rtol=1e-5, atol=1e-5, err_msg="%s/%s" % (flow, key))
