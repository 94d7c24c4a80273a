"""Caffe2 semantics found by running Caffe2's own operator tests (issue #15): ReduceFront/Back
with `lengths` and their written-out gradients, Cast to and from STRING and its gradient maker,
Reshape on empty tensors, Range, SigmoidCrossEntropyWithLogits' variants, Clip without bounds,
Adagrad's extra outputs and the gradients Caffe2 refuses. Expected values are numpy formulas
or results of torch 1.4.0's Caffe2 (noted where so)."""
import numpy as np
import pytest

from food101.caffe2 import core, workspace
from food101.caffe2.errors import Caffe2Error

rng = np.random.RandomState(0)


@pytest.fixture(autouse=True)
def fresh_workspace():
    workspace.ResetWorkspace()
    yield
    workspace.ResetWorkspace()


def run(op_type, inputs, outputs=("Y",), **args):
    names = ["in%d" % i for i in range(len(inputs))]
    for name, value in zip(names, inputs):
        workspace.FeedBlob(name, value)
    workspace.RunOperatorOnce(core.CreateOperator(op_type, names, list(outputs), **args))
    results = [workspace.FetchBlob(o) for o in outputs]
    return results[0] if len(results) == 1 else results


# ------------------------------------------------------------------ ReduceFront* / ReduceBack*
@pytest.mark.parametrize("kind", ["Sum", "Mean", "Max"])
def test_reduce_front_with_lengths_takes_the_first_rows_of_each_column(kind):
    X = rng.rand(4, 2, 3).astype(np.float32)
    lengths = np.array([1, 4, 2, 3, 4, 1], dtype=np.int32)
    Y = run("ReduceFront" + kind, [X, lengths], num_reduce_dim=1)
    cols = X.reshape(4, 6)
    fn = {"Sum": np.sum, "Mean": np.mean, "Max": np.max}[kind]
    expected = np.array([fn(cols[:n, j]) for j, n in enumerate(lengths)]).reshape(2, 3)
    np.testing.assert_allclose(Y, expected, rtol=1e-6)


@pytest.mark.parametrize("kind", ["Sum", "Mean", "Max"])
def test_reduce_back_with_lengths_takes_the_first_columns_of_each_row(kind):
    X = rng.rand(2, 3, 5).astype(np.float32)
    lengths = np.array([1, 5, 2, 3, 4, 1], dtype=np.int32)
    Y = run("ReduceBack" + kind, [X, lengths], num_reduce_dim=1)
    rows = X.reshape(6, 5)
    fn = {"Sum": np.sum, "Mean": np.mean, "Max": np.max}[kind]
    expected = np.array([fn(rows[i, :n]) for i, n in enumerate(lengths)]).reshape(2, 3)
    np.testing.assert_allclose(Y, expected, rtol=1e-6)


def test_reduce_front_mean_gradient_takes_x_or_its_int64_shape():
    X = rng.rand(3, 4).astype(np.float32)
    dY = rng.rand(4).astype(np.float32)
    from_x = run("ReduceFrontMeanGradient", [dY, X], ["dX"], num_reduce_dim=1)
    from_shape = run("ReduceFrontMeanGradient", [dY, np.array([3, 4], dtype=np.int64)], ["dX"],
                     num_reduce_dim=1)
    np.testing.assert_array_equal(from_x, from_shape)
    np.testing.assert_allclose(from_x, np.broadcast_to(dY / 3, (3, 4)), rtol=1e-6)


def test_reduce_back_sum_gradient_with_lengths_and_gradient_registry():
    X = rng.rand(2, 4).astype(np.float32)
    lengths = np.array([1, 3], dtype=np.int32)
    op = core.CreateOperator("ReduceBackSum", ["X", "lengths"], ["Y"])
    grad_ops, g_input = core.GradientRegistry.GetGradientForOp(op, ["Y_grad"])
    assert [(g.type, list(g.input)) for g in grad_ops] == [
        ("ReduceBackSumGradient", ["Y_grad", "X", "lengths"])]
    assert [None if g is None else str(g) for g in g_input] == ["X_grad", None]
    workspace.FeedBlob("X", X)
    workspace.FeedBlob("lengths", lengths)
    workspace.FeedBlob("Y_grad", np.array([2.0, 5.0], dtype=np.float32))
    workspace.RunOperatorsOnce(grad_ops)
    np.testing.assert_array_equal(workspace.FetchBlob("X_grad"),
                                  [[2, 0, 0, 0], [5, 5, 5, 0]])


def test_reduce_front_max_gradient_goes_to_every_tied_max():
    X = np.array([[1.0, 3.0], [1.0, 2.0]], dtype=np.float32)
    dX = run("ReduceFrontMaxGradient", [np.array([1.0, 1.0], np.float32), X,
                                        np.array([1.0, 3.0], np.float32)], ["dX"])
    np.testing.assert_array_equal(dX, [[1, 1], [1, 0]])


# --------------------------------------------------------------------------------------- Cast
def test_cast_to_string_and_back():
    strings = run("Cast", [np.array([3, -2], dtype=np.int32)], to=core.DataType.STRING)
    assert strings.tolist() == [b"3", b"-2"]  # C++ std::to_string
    floats = run("Cast", [np.array([1.5], dtype=np.float32)], to=core.DataType.STRING)
    assert floats.tolist() == [b"1.500000"]
    back = run("Cast", [strings], to=core.DataType.INT64)
    assert back.dtype == np.int64 and back.tolist() == [3, -2]


def test_cast_gradient_casts_back_and_needs_from_type():
    op = core.CreateOperator("Cast", ["X"], ["Y"], to=core.DataType.FLOAT,
                             from_type=core.DataType.INT32)
    grad_ops, _ = core.GradientRegistry.GetGradientForOp(op, ["Y_grad"])
    (g,) = grad_ops
    args = {a.name: a.i for a in g.arg}
    assert (g.type, list(g.input), list(g.output)) == ("Cast", ["Y_grad"], ["X_grad"])
    assert args == {"to": core.DataType.INT32, "from_type": core.DataType.FLOAT}
    with pytest.raises(Exception, match="from_type"):
        core.GradientRegistry.GetGradientForOp(core.CreateOperator("Cast", ["X"], ["Y"], to=1),
                                               ["Y_grad"])


# ------------------------------------------------------------------------------------ Reshape
@pytest.mark.parametrize("old, shape, expected", [
    # results of torch 1.4.0's Caffe2
    ((2, 0), (-1, 0), (0, 0)), ((0,), (0, -1), (0, 0)), ((0, 0), (0, 0, 0), (0, 0, 0)),
    ((0, 3), (5, -1), (5, 0)), ((0, 3), (0, -1, 2), (0, 0, 2)), ((0, 3), (0, 0), (0, 0)),
    ((4, 3, 2), (-1, 0), (8, 3)),
])
def test_reshape_zeros_and_inferred_dims(old, shape, expected):
    Y, _ = run("Reshape", [np.zeros(old, np.float32)], ["Y", "old"], shape=shape)
    assert Y.shape == expected


@pytest.mark.parametrize("old, shape, message", [
    ((3,), (-1, 0), "non-zero size"), ((6,), (-1, -1), "more than one missing"),
    ((6,), (4, -1), "does not agree"), ((6,), (4, 2), "does not agree"),
])
def test_reshape_errors_as_caffe2(old, shape, message):
    with pytest.raises(Caffe2Error, match=message):
        run("Reshape", [np.zeros(old, np.float32)], ["Y", "old"], shape=shape)


# -------------------------------------------------------------------------------------- Range
@pytest.mark.parametrize("bounds, expected", [
    # results of torch 1.4.0's Caffe2 (C++ integer division: Range(0, -5, -2) has 2 values)
    ((10,), list(range(10))), ((2, 10000, -1), []), ((0, 1, -2), [0]), ((0, -5, -2), [0, -2]),
    ((0.0, 1.0, 0.3), [0.0, 0.3, 0.6, 0.9]),
])
def test_range(bounds, expected):
    Y = run("Range", [np.array(b) for b in bounds])
    np.testing.assert_allclose(Y, np.array(expected, dtype=Y.dtype), rtol=1e-6)


def test_range_step_zero():
    with pytest.raises(Caffe2Error, match="Step size cannot be 0"):
        run("Range", [np.array(0), np.array(10), np.array(0)])


# ---------------------------------------------------------------------------- losses and Clip
def test_sigmoid_cross_entropy_variants():
    x = np.array([[1.4, -0.6, 0.3]], dtype=np.float32)
    z = np.array([[1.0, 0.0, 1.0]], dtype=np.float32)
    softplus = np.log1p(np.exp(x))
    log_sig = -np.log1p(np.exp(-x))
    np.testing.assert_allclose(run("SigmoidCrossEntropyWithLogits", [x, z], log_D_trick=1),
                               np.mean(-(2 * z - 1) * log_sig, axis=-1), rtol=1e-5)
    np.testing.assert_allclose(run("SigmoidCrossEntropyWithLogits", [x, z], unjoined_lr_loss=1),
                               np.mean(-z * x + (1 - z) * softplus, axis=-1), rtol=1e-5)


def test_clip_without_bounds_is_the_identity():
    X = rng.randn(5).astype(np.float32)
    np.testing.assert_array_equal(run("Clip", [X]), X)


# ------------------------------------------------------------------------------------ Adagrad
def test_adagrad_effective_lr_and_update_outputs():
    w, h, g = (rng.rand(4).astype(np.float32) for _ in range(3))
    lr, eps = np.array([0.1], np.float32), 0.01
    w2, h2, elr, update = run("Adagrad", [w, h, g, lr], ["w", "h", "elr", "u"], epsilon=eps)
    expected_h = h + g * g
    expected_elr = lr / (np.sqrt(expected_h) + eps)
    np.testing.assert_allclose(h2, expected_h, rtol=1e-6)
    np.testing.assert_allclose(elr, expected_elr, rtol=1e-6)
    np.testing.assert_allclose(update, expected_elr * g, rtol=1e-6)
    np.testing.assert_allclose(w2, w + expected_elr * g, rtol=1e-6)


# ------------------------------------------------------------------ gradients Caffe2 refuses
@pytest.mark.parametrize("op_type, inputs", [("LengthsGather", ["I", "L", "X"]),
                                             ("SumSqrElements", ["X"])])
def test_gradient_refused_as_caffe2(op_type, inputs):
    with pytest.raises(Exception, match="gradient"):
        core.GradientRegistry.GetGradientForOp(core.CreateOperator(op_type, inputs, ["Y"]),
                                               ["Y_grad"])
