"""The Model Zoo fixture (real Caffe2 output) through init_net.pb then predict_net.pb at 227x227."""
import json
import os

import numpy as np
import pytest

from food101.caffe2 import workspace
from food101.caffe2.proto import load_net
from tests.support import ZOO

ZOO = ZOO


@pytest.fixture(scope="module")
def forward():
    """Run the fixture once (both nets, as a Caffe2 user would) and keep every checked blob."""
    expected = np.load(os.path.join(ZOO, "forward_227.npz"))
    with open(os.path.join(ZOO, "forward_227.json")) as fh:
        meta = json.load(fh)
    workspace.ResetAll()
    workspace.RunNetOnce(load_net(os.path.join(ZOO, "init_net.pb")))
    workspace.FeedBlob("data", expected["in:data"])
    workspace.RunNetOnce(load_net(os.path.join(ZOO, "predict_net.pb")))
    blobs = {name: workspace.FetchBlob(name) for name in meta["shapes"]}
    workspace.ResetAll()
    return expected, meta, blobs


def test_blob_shapes_follow_caffe_ceil_mode_pooling(forward):
    _, meta, blobs = forward
    for name, shape in meta["shapes"].items():
        assert list(blobs[name].shape) == shape, name
    assert blobs["pool3"].shape[2:] == (28, 28)
    assert blobs["pool5"].shape[2:] == (14, 14)


def _expected_cases():
    expected = np.load(os.path.join(ZOO, "forward_227.npz"))
    return [k for k in expected.files if not k.startswith("in:")]


@pytest.mark.parametrize("key", _expected_cases())
def test_blob_matches_real_caffe2(forward, key):
    expected, meta, blobs = forward
    kind, name = key.split(":", 1)
    got, want = blobs[name], expected[key]
    if kind == "chsum":  # large maps were stored summed over H and W: compare channel means
        area = got.shape[2] * got.shape[3]
        got, want = got.sum(axis=(2, 3), dtype=np.float64) / area, want / area
    tol = meta["tol"]
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=key)


def test_softmax_rows_sum_to_one(forward):
    _, _, blobs = forward
    np.testing.assert_allclose(blobs["softmaxout"].sum(axis=1).ravel(), 1.0, atol=1e-5)
