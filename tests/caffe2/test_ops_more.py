"""Ops added for Caffe2's own test suite, against real Caffe2's outputs on the same inputs
(fixture: tests/data/caffe2_reference/more_ops.json from tools/gen_more_ops.py)."""
import json
import os

import numpy as np
import pytest

from food101.caffe2 import core, workspace
from food101.caffe2.errors import Caffe2Error
from tests.support import REFERENCE

with open(os.path.join(REFERENCE, "more_ops.json")) as _f:
    CASES = json.load(_f)


@pytest.fixture(autouse=True)
def fresh_workspace():
    workspace.ResetWorkspace()
    yield
    workspace.ResetWorkspace()


@pytest.mark.parametrize("case", CASES, ids=["%s-%d" % (c["type"], i) for i, c in enumerate(CASES)])
def test_op_matches_caffe2(case):
    for name, (value, dtype) in case["feeds"].items():
        workspace.FeedBlob(name, np.asarray(value, dtype=dtype))
    outputs = list(case["outputs"])
    workspace.RunOperatorOnce(core.CreateOperator(case["type"], list(case["feeds"]), outputs,
                                                  **case["args"]))
    for name, (value, dtype) in case["outputs"].items():
        got = workspace.FetchBlob(name)
        expected = np.asarray(value, dtype=dtype)
        assert got.shape == expected.shape, name
        if expected.dtype.kind == "f":
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(got.astype(expected.dtype), expected, err_msg=name)


def test_slice_refuses_two_sliced_dims_as_caffe2():
    workspace.FeedBlob("X", np.zeros((4, 5), np.float32))
    with pytest.raises(Caffe2Error, match="only one dim"):
        workspace.RunOperatorOnce(core.CreateOperator("Slice", ["X"], ["Y"], starts=[1, 1],
                                                      ends=[2, 2]))


def test_nan_check_names_the_bad_input():
    workspace.FeedBlob("X", np.array([1.0, np.nan], np.float32))
    with pytest.raises(Caffe2Error, match="input 0 has NaN"):
        workspace.RunOperatorOnce(core.CreateOperator("NanCheck", ["X"], ["Y"]))
