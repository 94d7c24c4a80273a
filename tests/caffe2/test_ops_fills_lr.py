"""Fills, learning-rate schedules, iteration counters, update ops and inspection ops against
real Caffe2 (fill_stats.json, learning_rate.json, index.json) and numpy references."""
import json
import logging
import math
import os
import pickle

import numpy as np
import pytest
import torch

from food101.caffe2 import caffe2_pb2, workspace
from food101.caffe2.errors import Caffe2Error, OperatorError
from food101.caffe2.utils import make_op
from food101.caffe2.ops.learning_rate import (LR_POLICIES, LRPolicyError, Mutex, check_schedule,
                                              learning_rate)
from food101.caffe2.ops.utility import format_tensor
from tests.support import REFERENCE

OPS = os.path.join(REFERENCE, "ops")


def _load_json(name):
    with open(os.path.join(OPS, name)) as fh:
        return json.load(fh)


FILL_STATS = _load_json("fill_stats.json")
LR_CASES = _load_json("learning_rate.json")
UPDATE_CASES = [c for c in _load_json("index.json")
                if c["op_type"] in ("MomentumSGDUpdate", "WeightedSum")]


def run(op_type, inputs=(), outputs=("Y",), **args):
    """Run one op; `inputs` maps names to arrays (fed first). Returns the fetched outputs."""
    inputs = dict(inputs)
    for name, value in inputs.items():
        workspace.FeedBlob(name, value)
    workspace.RunOperatorOnce(make_op(op_type, list(inputs), list(outputs), **args))
    fetched = [workspace.FetchBlob(o) for o in outputs]
    return fetched[0] if len(fetched) == 1 else fetched


# --------------------------------------------------------------------------------------
# Random fills: statistics of a large draw against real Caffe2's
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("row", FILL_STATS, ids=lambda r: "%s-%s" % (
    r["op_type"], "x".join(map(str, r["shape"]))))
def test_fill_statistics_match_caffe2(row):
    draws = []
    for seed in range(4):  # the fixture's shape (it sets fan_in/fan_out), several draws
        workspace.seed(seed)
        draws.append(run(row["op_type"], shape=row["shape"], **row["args"]))
    y = np.concatenate([d.ravel() for d in draws]).astype(np.float64)
    assert draws[0].shape == tuple(row["shape"]) and draws[0].dtype == np.float32
    n_ref, sigma = np.prod(row["shape"]), row["std"]
    assert abs(y.std() - sigma) <= 0.03 * sigma + 1e-12
    assert abs(y.mean() - row["mean"]) <= 6 * sigma * math.sqrt(1 / y.size + 1 / n_ref) + 1e-12
    if row["op_type"] in ("XavierFill", "UniformFill"):
        # uniform: hard bounds, and a large draw gets close to them
        if row["op_type"] == "XavierFill":
            fan_in = n_ref // row["shape"][0]
            high = np.sqrt(np.float32(3) / np.float32(fan_in))
            low = -high
        else:
            low, high = row["args"]["min"], row["args"]["max"]
        assert low <= y.min() and y.max() < high
        assert low <= row["min"] and row["max"] < high
        width = high - low
        assert y.min() - low < 0.002 * width and high - y.max() < 0.002 * width
    elif row["op_type"] in ("MSRAFill", "GaussianFill"):
        # gaussian: unbounded; the extremes of this many draws lie 3.5 to 6 sigma out
        mean = row["args"].get("mean", 0.0)
        assert 3.5 * sigma < y.max() - mean < 6 * sigma
        assert 3.5 * sigma < mean - y.min() < 6 * sigma
    else:
        assert y.min() == row["min"] and y.max() == row["max"]


def test_xavier_and_msra_scales_follow_caffe2_fans():
    # Xavier: fan_in = numel / shape[0]; MSRA: fan_out = numel / shape[1], Gaussian (not uniform).
    w = run("XavierFill", shape=[101, 512, 1, 1])
    assert np.abs(w).max() <= np.sqrt(np.float32(3.0 / 512))
    w = run("MSRAFill", shape=[101, 512, 1, 1])
    assert w.std() == pytest.approx(np.sqrt(2.0 / 101), rel=0.03)
    assert np.abs(w).max() > np.sqrt(3) * np.sqrt(2.0 / 101)  # beyond any uniform's bound


def test_random_fills_are_reproducible_and_draw_from_the_workspace_rng():
    workspace.seed(7)
    a = run("GaussianFill", shape=[100])
    b = run("GaussianFill", shape=[100])
    workspace.seed(7)
    assert np.array_equal(run("GaussianFill", shape=[100]), a)
    assert not np.array_equal(a, b)


def test_uniform_int_fill_includes_both_ends():
    y = run("UniformIntFill", shape=[4000], min=-2, max=3)
    assert y.dtype == np.int32 and set(np.unique(y)) == {-2, -1, 0, 1, 2, 3}


def test_uniform_fill_with_min_max_blobs():
    y = run("UniformFill", {"S": np.array([3, 5], np.int64), "lo": np.array([2.0], np.float32),
                            "hi": np.array([2.5], np.float32)}, input_as_shape=1)
    assert y.shape == (3, 5) and y.min() >= 2.0 and y.max() < 2.5
    empty = run("UniformFill", {"S": np.array([3, 5], np.int64), "lo": np.array([1.0], np.float32),
                                "hi": np.array([0.0], np.float32)}, input_as_shape=1)
    assert empty.shape == (0, 5)  # Caffe2: min > max gives an empty first dimension


def test_random_fill_shape_conventions():
    y = run("XavierFill", {"X": np.zeros((2, 3), np.float32)}, extra_shape=[4])
    assert y.shape == (2, 3, 4)
    y = run("MSRAFill", {"S": np.array([8, 4, 3, 3], np.int64)}, input_as_shape=1)
    assert y.shape == (8, 4, 3, 3)
    with pytest.raises(OperatorError, match="extra_shape when there is no input"):
        run("GaussianFill", shape=[2], extra_shape=[3])
    with pytest.raises(OperatorError, match="MSRAFill: needs at least two dimensions"):
        run("MSRAFill", shape=[5])


# --------------------------------------------------------------------------------------
# ConstantFill and GivenTensor*Fill: exact shapes, dtypes and values
# --------------------------------------------------------------------------------------
CONSTANT_FILL_CASES = [
    # (inputs, args, shape, dtype, value)
    ({}, dict(shape=[3, 4], value=2.5), (3, 4), np.float32, 2.5),
    ({}, dict(shape=[2], value=7), (2,), np.int64, 7),  # an int value with no dtype -> INT64
    ({}, dict(shape=[2]), (2,), np.float32, 0.0),
    ({}, dict(shape=[1], value=0, dtype=caffe2_pb2.TensorProto.INT64), (1,), np.int64, 0),
    ({}, dict(shape=[2, 2], value=3.0, dtype=caffe2_pb2.TensorProto.INT32), (2, 2), np.int32, 3),
    ({}, dict(shape=[2], value=1, dtype=caffe2_pb2.TensorProto.BOOL), (2,), np.bool_, True),
    ({}, dict(shape=[2], value=200, dtype=caffe2_pb2.TensorProto.UINT8), (2,), np.uint8, 200),
    ({}, dict(shape=[2], value=0.5, dtype=caffe2_pb2.TensorProto.DOUBLE), (2,), np.float64, 0.5),
    ({}, dict(shape=[], value=1.0), (), np.float32, 1.0),
    ({"X": np.zeros((2, 3, 4), np.uint8)}, dict(value=1.5), (2, 3, 4), np.float32, 1.5),
    ({"X": np.zeros((2, 3), np.float32)}, dict(value=1.0, extra_shape=[5]), (2, 3, 5),
     np.float32, 1.0),
    ({"S": np.array([4, 2], np.int64)},
     dict(input_as_shape=1, value=6, dtype=caffe2_pb2.TensorProto.INT32), (4, 2), np.int32, 6),
    ({"S": np.array([4], np.int64)}, dict(input_as_shape=1, extra_shape=[3], value=1.0), (4, 3),
     np.float32, 1.0),
]


@pytest.mark.parametrize("inputs, args, shape, dtype, value", CONSTANT_FILL_CASES)
def test_constant_fill(inputs, args, shape, dtype, value):
    y = run("ConstantFill", inputs, **args)
    assert y.shape == shape and y.dtype == dtype
    assert np.all(y == value)


def test_constant_fill_string_and_errors():
    y = run("ConstantFill", shape=[2], value="hi", dtype=caffe2_pb2.TensorProto.STRING)
    assert y.dtype == object and list(y) == [b"hi", b"hi"]
    with pytest.raises(OperatorError, match="cannot set the shape argument"):
        run("ConstantFill", {"X": np.zeros(2, np.float32)}, shape=[2], value=1.0)
    with pytest.raises(OperatorError, match="cannot be represented"):
        run("ConstantFill", shape=[2], value=2.5, dtype=caffe2_pb2.TensorProto.INT32)
    with pytest.raises(OperatorError, match="input_as_shape"):
        run("ConstantFill", shape=[2], input_as_shape=1)
    with pytest.raises(OperatorError, match="unexpected 'dtype'"):
        run("ConstantFill", shape=[2], value=1.0, dtype=caffe2_pb2.TensorProto.FLOAT16)


GIVEN_FILL_CASES = [
    ("GivenTensorFill", [1.5, -2.0, 3.25, 0.0], np.float32),
    ("GivenTensorDoubleFill", [1.5, -2.0, 3.25, 0.0], np.float64),
    ("GivenTensorIntFill", [1, -2, 3, 2 ** 31 - 1], np.int32),
    ("GivenTensorInt16Fill", [1, -2, 3, 4], np.int16),
    ("GivenTensorInt64Fill", [1, -2, 3, 2 ** 40], np.int64),
    ("GivenTensorBoolFill", [1, 0, 0, 1], np.bool_),
]


@pytest.mark.parametrize("op_type, values, dtype", GIVEN_FILL_CASES)
def test_given_tensor_fill_variants(op_type, values, dtype):
    y = run(op_type, shape=[2, 2], values=values)
    assert y.shape == (2, 2) and y.dtype == dtype
    assert np.array_equal(y.ravel(), np.array(values).astype(dtype))


def test_given_tensor_fill_dtype_argument_and_size_check():
    y = run("GivenTensorFill", shape=[3], values=[1, 2, 3], dtype=caffe2_pb2.TensorProto.INT64)
    assert y.dtype == np.int64 and list(y) == [1, 2, 3]
    with pytest.raises(OperatorError, match=r"shape \[2, 2\] holds 4 values, but 'values' has 3"):
        run("GivenTensorFill", shape=[2, 2], values=[1.0, 2.0, 3.0])


def test_given_tensor_string_and_byte_string_fills():
    y = run("GivenTensorStringFill", shape=[2], values=["ab", b"\xff\x00"])
    assert y.dtype == object and list(y) == [b"ab", b"\xff\x00"]
    # Valid UTF-8 arrives from the registry as str, other bytes as bytes: both give the raw bytes.
    for raw in (b"\x00\xff\x80ab\xc3", "héllo".encode("utf-8")):
        y = run("GivenTensorByteStringToUInt8Fill", shape=[len(raw)], values=[raw])
        assert y.dtype == np.uint8 and y.tobytes() == raw
    y = run("GivenTensorByteStringToUInt8Fill", shape=[2, 3], values=[b"abcdef"])
    assert y.shape == (2, 3) and y.tobytes() == b"abcdef"


# --------------------------------------------------------------------------------------
# Learning rate: every policy x iteration x base_lr of real Caffe2, by op and by function
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", LR_CASES, ids=lambda c: "%s%+g" % (c["label"], c["base_lr"]))
def test_learning_rate_function_matches_caffe2(case):
    assert case["supported"]
    got = [learning_rate(case["policy"], it, case["base_lr"], **case["args"])
           for it in case["iters"]]
    np.testing.assert_allclose(got, case["lr"], rtol=1e-6, atol=0)


@pytest.mark.parametrize("case", LR_CASES, ids=lambda c: "%s%+g" % (c["label"], c["base_lr"]))
def test_learning_rate_op_matches_caffe2(case):
    net = caffe2_pb2.NetDef(name="lr")
    net.op.append(make_op("LearningRate", ["ITER"], ["LR"], base_lr=case["base_lr"],
                          policy=case["policy"], **case["args"]))
    workspace.FeedBlob("ITER", np.array([0], np.int64))
    workspace.CreateNet(net)
    got = []
    for it in case["iters"]:
        workspace.FeedBlob("ITER", np.array([it], np.int64))
        workspace.RunNet("lr")
        lr = workspace.FetchBlob("LR")
        assert lr.dtype == np.float32 and lr.shape == (1,)
        got.append(float(lr[0]))
    np.testing.assert_allclose(got, case["lr"], rtol=1e-6, atol=0)


def test_every_policy_has_a_worked_example_and_runs():
    extra_args = {"composite": dict(sub_policy_num_iters=[5, 10], sub_policy_0_policy="fixed",
                                    sub_policy_1_policy="exp", sub_policy_1_gamma=0.9),
                  "step": dict(stepsize=3, gamma=0.5), "alter": dict(active_period=2,
                                                                   inactive_period=1),
                  "cyclical": dict(stepsize=4), "poly": dict(max_iter=100, power=1.0)}
    for name, fn in LR_POLICIES.items():
        assert "Example" in (fn.__doc__ or ""), name
        rate = learning_rate(name, 7, 0.1, **extra_args.get(name, {}))
        assert math.isfinite(rate), name


@pytest.mark.parametrize("policy, args, expected", [
    ("cyclical", dict(max_lr=0.005, stepsize=10), [0.001, 0.003, 0.005, 0.003, 0.001]),
    # iterations mod 3 = 0, 2, 1, 0, 2: on for 2 iterations, off for 1
    ("alter", dict(active_period=2, inactive_period=1), [0.001, 0.0, 0.001, 0.001, 0.0]),
    ("gate", dict(multiplier_1=1.0, multiplier_2=0.1, num_iter=10),
     [0.001, 0.001, 0.0001, 0.0001, 0.0001]),
    ("multistep", dict(stepvalue=[5, 10], gamma=0.1), [0.001, 0.0001, 0.00001, 0.00001, 0.00001]),
    ("composite", dict(sub_policy_num_iters=[10, 100], sub_policy_0_policy="fixed",
                       sub_policy_1_policy="step", sub_policy_1_stepsize=15, sub_policy_1_gamma=0.5,
                       sub_policy_1_lr_scale=2.0), [0.001, 0.001, 0.002, 0.002, 0.001]),
])
def test_policies_beyond_the_fixture(policy, args, expected):
    iters = [0, 5, 10, 15, 20]
    if policy == "composite":
        iters = [0, 10, 11, 14, 15]
    got = [learning_rate(policy, it, 0.001, **args) for it in iters]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_composite_policy_through_the_op():
    op = make_op("LearningRate", ["ITER"], ["LR"], base_lr=0.1, policy="composite",
                 sub_policy_num_iters=[10, 100], sub_policy_0_policy="fixed",
                 sub_policy_1_policy="step", sub_policy_1_stepsize=20, sub_policy_1_gamma=0.5)
    workspace.FeedBlob("ITER", np.array([30], np.int64))
    workspace.RunOperatorOnce(op)
    assert workspace.FetchBlob("LR")[0] == pytest.approx(0.05)


def test_unknown_policy_lists_the_valid_ones():
    with pytest.raises(LRPolicyError) as err:
        learning_rate("stepp", 3, 0.1)
    message = str(err.value)
    assert "'stepp'" in message and "did you mean 'step'" in message
    for name in ("fixed", "step", "exp", "inv", "poly", "cosine", "hill"):
        assert name in message
    with pytest.raises(Caffe2Error, match=r"LearningRate.*unknown learning rate policy 'stepp'.*"
                                          r"valid policies: .*fixed"):
        run("LearningRate", {"ITER": np.array([1], np.int64)}, ("LR",), base_lr=0.1, policy="stepp")


def test_learning_rate_op_argument_errors():
    feed = {"ITER": np.array([1], np.int64)}
    with pytest.raises(OperatorError, match="base_lr"):
        run("LearningRate", feed, ("LR",), policy="fixed")
    with pytest.raises(OperatorError, match="policy"):
        run("LearningRate", feed, ("LR",), base_lr=0.1)
    with pytest.raises(OperatorError, match="stepsize > 0"):
        run("LearningRate", feed, ("LR",), base_lr=0.1, policy="step", gamma=0.5)
    with pytest.raises(OperatorError, match="iteration counter"):
        run("LearningRate", {"ITER": np.array([1.0], np.float32)}, ("LR",), base_lr=0.1,
            policy="fixed")


def test_poly_without_max_iter_keeps_base_lr_as_caffe2():
    # Caffe2 stores max_iter (default -1) as uint64: 1 - iter / 2**64 is 1 in float32.
    assert learning_rate("poly", 5000, 0.1, power=2.0) == pytest.approx(0.1)
    assert math.isnan(learning_rate("poly", 1001, 0.1, power=0.5, max_iter=1000))


def test_check_schedule_warnings():
    assert check_schedule("step", -0.1, 1000, stepsize=100, gamma=0.5) == []
    assert check_schedule("poly", 0.1, 1000, max_iter=1000, power=1.0) == []
    joined = " | ".join(check_schedule("poly", 0.1, 1000, power=0.5))
    assert "without a positive max_iter" in joined and "power=0.5 < 1" in joined
    joined = " | ".join(check_schedule("poly", 0.1, 1000, max_iter=800, power=0.5))
    assert "shorter than the run" in joined and "nan at iteration 801" in joined
    joined = " | ".join(check_schedule("poly", 0.1, 1000, max_iter=800, power=2.0))
    assert "grows at iteration 801" in joined
    assert any("grow" in w for w in check_schedule("exp", 0.1, 100, gamma=1.1))
    assert any("changes sign" in w for w in check_schedule(
        "gate", 0.1, 100, multiplier_1=1.0, multiplier_2=-1.0, num_iter=50))
    assert any("ignored" in w for w in check_schedule("fixed", 0.1, 10, stepsize=3))
    assert any("never finishes" in w for w in check_schedule(
        "linearWarmup", 0.1, 10, start_multiplier=0.1, num_iter=50))
    assert any("Caffe's solver" in w for w in check_schedule(
        "multistep", 0.1, 10, stepvalue=[5], gamma=0.1))
    with pytest.raises(LRPolicyError, match="valid policies"):
        check_schedule("nope", 0.1, 10)


# --------------------------------------------------------------------------------------
# Iteration counters
# --------------------------------------------------------------------------------------
def test_iter_increments_in_place_as_int64():
    workspace.FeedBlob("iter", np.array([0], np.int64))
    op = make_op("Iter", ["iter"], ["iter"])
    for expected in (1, 2, 3):
        workspace.RunOperatorOnce(op)
        value = workspace.FetchBlob("iter")
        assert value.dtype == np.int64 and value.shape == (1,) and value[0] == expected


def test_iter_without_input_starts_at_one_then_counts():
    op = make_op("Iter", [], ["it"])
    workspace.RunOperatorOnce(op)
    workspace.RunOperatorOnce(op)
    assert workspace.FetchBlob("it")[0] == 2


def test_iter_rejects_a_float_counter():
    with pytest.raises(OperatorError, match="int64"):
        run("Iter", {"iter": np.array([0.0], np.float32)}, ("iter",))


def test_atomic_iter_and_mutex():
    workspace.RunOperatorOnce(make_op("CreateMutex", [], ["mutex"]))
    mutex = workspace.FetchBlob("mutex")
    assert isinstance(mutex, Mutex)
    assert isinstance(pickle.loads(pickle.dumps(mutex)), Mutex)  # checkpoints can hold it
    workspace.FeedBlob("it", np.array([41], np.int64))
    workspace.RunOperatorOnce(make_op("AtomicIter", ["mutex", "it"], ["it"]))
    assert workspace.FetchBlob("it")[0] == 42
    with pytest.raises(OperatorError, match="mutex made by CreateMutex"):
        workspace.RunOperatorOnce(make_op("AtomicIter", ["it", "it"], ["it"]))


def test_iter_and_learning_rate_together_as_caffe2_training_nets_run_them():
    # Iter runs before LearningRate, so the first rate is the one for iteration 1.
    workspace.FeedBlob("iter", np.array([0], np.int64))
    net = caffe2_pb2.NetDef(name="train")
    net.op.extend([make_op("Iter", ["iter"], ["iter"]),
                   make_op("LearningRate", ["iter"], ["LR"], base_lr=-0.1, policy="step",
                           stepsize=1, gamma=0.999)])
    workspace.CreateNet(net)
    rates = []
    for _ in range(3):
        workspace.RunNet("train")
        rates.append(float(workspace.FetchBlob("LR")[0]))
    np.testing.assert_allclose(rates, [-0.0999, -0.0998001, -0.0997003], rtol=1e-6)


# --------------------------------------------------------------------------------------
# Update ops: real Caffe2 cases and a numpy Adam
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", UPDATE_CASES, ids=lambda c: c["name"])
def test_update_op_matches_caffe2(case):
    net = caffe2_pb2.NetDef()
    with open(os.path.join(OPS, case["net"]), "rb") as fh:
        net.ParseFromString(fh.read())
    data = np.load(os.path.join(OPS, case["data"]))
    for name in case["inputs"]:
        workspace.FeedBlob(name, data["in:" + name])
    workspace.RunNetOnce(net)
    for name in case["outputs"]:
        np.testing.assert_allclose(workspace.FetchBlob(name), data["out:" + name],
                                   rtol=case["tol"], atol=case["tol"], err_msg=name)


def test_momentum_sgd_update_does_not_mutate_inputs_and_momentum_sgd_matches():
    rs = np.random.RandomState(0)
    grad, mom, param = (rs.randn(5).astype(np.float32) for _ in range(3))
    lr = np.array([0.1], np.float32)
    ng, nm, npar = run("MomentumSGDUpdate", {"g": grad, "m": mom, "lr": lr, "p": param},
                       ("g_out", "m_out", "p_out"), momentum=0.9, nesterov=1)
    expected_m = 0.9 * mom + 0.1 * grad
    np.testing.assert_allclose(nm, expected_m, rtol=1e-6)
    np.testing.assert_allclose(ng, 1.9 * expected_m - 0.9 * mom, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(npar, param - ng, rtol=1e-6)
    np.testing.assert_array_equal(workspace.FetchBlob("p"), param)  # the input is untouched
    ng2, nm2 = run("MomentumSGD", {"g": grad, "m": mom, "lr": lr}, ("g2", "m2"), momentum=0.9,
                   nesterov=1)
    np.testing.assert_array_equal(ng2, ng)
    np.testing.assert_array_equal(nm2, nm)


def test_weighted_sum_of_three_pairs_and_size_check():
    rs = np.random.RandomState(1)
    xs = [rs.randn(2, 3).astype(np.float32) for _ in range(3)]
    ws = [np.array([w], np.float32) for w in (1.0, -0.5, 2.0)]
    feed = {}
    for i, (x, w) in enumerate(zip(xs, ws)):
        feed["x%d" % i], feed["w%d" % i] = x, w
    y = run("WeightedSum", feed)
    np.testing.assert_allclose(y, xs[0] - 0.5 * xs[1] + 2.0 * xs[2], rtol=1e-6)
    with pytest.raises(OperatorError, match="exactly one value"):
        run("WeightedSum", {"a": xs[0], "b": np.ones(2, np.float32)})


def numpy_adam(param, m1, m2, grad, lr, t, beta1, beta2, eps):
    m1 = beta1 * m1 + (1 - beta1) * grad
    m2 = beta2 * m2 + (1 - beta2) * grad * grad
    correction = np.sqrt(1 - beta2 ** (t + 1)) / (1 - beta1 ** (t + 1))
    return param + lr * correction * m1 / (np.sqrt(m2) + eps), m1, m2


def test_adam_matches_a_numpy_reference_over_several_steps():
    rs = np.random.RandomState(2)
    param = rs.randn(4, 3).astype(np.float32)
    m1 = np.zeros_like(param)
    m2 = np.zeros_like(param)
    ref = [p.astype(np.float64) for p in (param, m1, m2)]
    lr = np.array([-0.01], np.float32)
    workspace.FeedBlob("param", param)
    workspace.FeedBlob("m1", m1)
    workspace.FeedBlob("m2", m2)
    workspace.FeedBlob("lr", lr)
    op = make_op("Adam", ["param", "m1", "m2", "grad", "lr", "iter"], ["param", "m1", "m2"],
                 beta1=0.8, beta2=0.99, epsilon=1e-6)
    for t in range(5):
        grad = rs.randn(4, 3).astype(np.float32)
        workspace.FeedBlob("grad", grad)
        workspace.FeedBlob("iter", np.array([t], np.int64))
        workspace.RunOperatorOnce(op)
        ref = list(numpy_adam(*ref, grad.astype(np.float64), float(lr[0]), t, 0.8, 0.99, 1e-6))
    for name, expected in zip(("param", "m1", "m2"), ref):
        np.testing.assert_allclose(workspace.FetchBlob(name), expected, rtol=1e-5, atol=1e-6,
                                   err_msg=name)


def test_adam_fourth_output_is_the_effective_gradient():
    feed = {"p": np.zeros(3, np.float32), "m1": np.zeros(3, np.float32),
            "m2": np.zeros(3, np.float32), "g": np.array([1.0, -2.0, 0.5], np.float32),
            "lr": np.array([-1.0], np.float32), "it": np.array([0], np.int64)}
    p, _, _, step = run("Adam", feed, ("p", "m1", "m2", "step"))
    np.testing.assert_allclose(p, -step, rtol=1e-6)
    g = feed["g"].astype(np.float64)  # first step: g / (|g| + eps / sqrt(1 - beta2)) ~ sign(g)
    np.testing.assert_allclose(step, g / (np.abs(g) + 1e-5 / np.sqrt(1 - 0.999)), rtol=1e-5)


# --------------------------------------------------------------------------------------
# Summarize and Print
# --------------------------------------------------------------------------------------
def test_summarize_uses_the_unbiased_std():
    x = np.array([1.0, 2.0, 4.0, 9.0], np.float32)
    stats = run("Summarize", {"X": x})
    np.testing.assert_allclose(stats, [1.0, 9.0, 4.0, np.std(x, ddof=1)], rtol=1e-6)
    assert stats.dtype == np.float32 and stats.shape == (4,)
    assert run("Summarize", {"X": np.array([3.0], np.float32)})[3] == 0.0


def test_summarize_to_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    workspace.FeedBlob("a/b", np.array([1.0, 3.0], np.float32))
    op = make_op("Summarize", ["a/b"], [], to_file=1)
    workspace.RunOperatorOnce(op)
    assert (tmp_path / "a#b.summary").read_text() == "1 3 2 1.41421\n"


def test_print_logs_caffe2_tensor_printer_lines(caplog):
    workspace.FeedBlob("X", np.array([[1.5, 2.0], [3.0, 4.25]], np.float32))
    net = caffe2_pb2.NetDef(name="p")
    net.op.append(make_op("Print", ["X"], [], every_n=2, limit=3))
    workspace.CreateNet(net)
    with caplog.at_level(logging.INFO, logger="food101.caffe2.ops.utility"):
        for _ in range(3):
            workspace.RunNet("p")
    lines = [r.getMessage() for r in caplog.records if r.name == "food101.caffe2.ops.utility"]
    assert lines == ["Tensor X of type float. Dims: (2,2,): 1.5,2,3"] * 2  # runs 1 and 3
    line = format_tensor("i", torch.tensor([True, False]))
    assert line == "Tensor i of type bool. Dims: (2,): 1,0"


@pytest.mark.cuda
def test_fills_learning_rate_and_updates_on_cuda():
    cuda = caffe2_pb2.DeviceOption(device_type=1, device_id=0)
    workspace.FeedBlob("iter", np.array([3], np.int64))  # the counter stays on the host
    workspace.FeedBlob("grad", np.ones((2, 3), np.float32), device_option=cuda)
    ops = [make_op("XavierFill", [], ["w"], shape=[2, 3]),
           make_op("ConstantFill", [], ["one"], shape=[1], value=1.0),
           make_op("UniformIntFill", [], ["k"], shape=[5], min=0, max=9),
           make_op("LearningRate", ["iter"], ["lr"], base_lr=-0.1, policy="step", stepsize=2,
                   gamma=0.5),
           make_op("WeightedSum", ["w", "one", "grad", "lr"], ["w2"])]
    for op in ops:
        op.device_option.CopyFrom(cuda)
        workspace.RunOperatorOnce(op)
    for name in ("w", "one", "k", "lr", "w2"):
        assert workspace.FetchTensor(name).is_cuda, name
    w = workspace.FetchBlob("w")
    np.testing.assert_allclose(workspace.FetchBlob("w2"), w - 0.05, rtol=1e-6, atol=1e-7)
