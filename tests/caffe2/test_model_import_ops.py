"""Ops model import adds (PadImage, ResizeNearest, HardSigmoid, ConvTranspose, ReduceMean)
against real Caffe2's outputs (tests/data/caffe_reference/tools/make_op_fixtures.py)."""
import os

import numpy as np
import pytest

from food101.caffe2.proto import load_net
from food101.zoo import _nets
from tests.support import REPO

OPS = os.path.join(REPO, "tests", "data", "caffe_reference", "ops")
CASES = sorted(f[:-3] for f in os.listdir(OPS) if f.endswith(".pb"))


@pytest.mark.parametrize("case", CASES)
def test_op_matches_real_caffe2(case):
    net = load_net(os.path.join(OPS, case + ".pb"))
    with np.load(os.path.join(OPS, case + ".npz")) as data:
        feeds = {k[3:]: data[k] for k in data.files if k.startswith("in:")}
        expected = {k[4:]: data[k] for k in data.files if k.startswith("out:")}
    blobs = _nets.run_in_private_workspace([net], feeds)
    for name, value in expected.items():
        got = _nets.to_numpy(blobs[name])
        assert got.shape == value.shape, (case, name)
        np.testing.assert_allclose(got, value, rtol=1e-5, atol=1e-5, err_msg=case)
