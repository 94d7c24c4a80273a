"""MaxPool's CPU gradient on tie-heavy inputs against a numpy transcription of Caffe2's CPU
MaxPool / MaxPoolGradient loops: every input equal to its window's max gets dY, windows
accumulated in raster order from zero, so the gradients must be equal bit for bit.
The fixture cases (test_ops_reference.py) are checked bit for bit here too."""
import itertools

import numpy as np
import pytest
import torch

from tests.caffe2.test_ops_reference import CASES, _load_case, run_case
from tests.support.op_runner import grad_of, run_op
from food101.caffe2.ops import max_pool_kernel


def caffe2_max_pool(x, kernels, strides, heads, out_sizes, dilations, dy):
    """Caffe2's loops (NCHW, any spatial rank): (Y, dX)."""
    n_, c_ = x.shape[:2]
    sizes = x.shape[2:]
    y = np.empty((n_, c_) + tuple(out_sizes), x.dtype)
    dx = np.zeros_like(x)
    for n, c in itertools.product(range(n_), range(c_)):
        for out in itertools.product(*(range(o) for o in out_sizes)):
            taps = []
            for offset in itertools.product(*(range(k) for k in kernels)):
                pos = tuple(o * s - h + t * d for o, s, h, t, d in
                            zip(out, strides, heads, offset, dilations))
                if all(0 <= p < n for p, n in zip(pos, sizes)):
                    taps.append(pos)
            values = [x[(n, c) + p] for p in taps]
            best = max(values)
            y[(n, c) + out] = best
            for p, v in zip(taps, values):
                if v == best:
                    dx[(n, c) + p] += dy[(n, c) + out]
    return y, dx


def ceil_out(size, kernel, stride, head):
    """Caffe's ceil-mode output size (legacy_pad=3), as conv_pool_base computes it."""
    out = -(-(size + 2 * head - kernel) // stride) + 1
    if head > 0 and (out - 1) * stride >= size + head:
        out -= 1
    return out


CASES_2D = [  # (shape, args, kernels, strides, heads, dilations)
    ((2, 3, 9, 9), dict(kernel=3, stride=2), (3, 3), (2, 2), (0, 0), (1, 1)),  # SqueezeNet's
    ((2, 2, 8, 7), dict(kernel=3, stride=1, pad=1), (3, 3), (1, 1), (1, 1), (1, 1)),
    ((1, 2, 10, 10), dict(kernel=3, stride=2, legacy_pad=3), (3, 3), (2, 2), (0, 0), (1, 1)),
    ((2, 2, 8, 8), dict(kernel=2, stride=2), (2, 2), (2, 2), (0, 0), (1, 1)),
    ((1, 3, 11, 11), dict(kernels=[3, 3], dilations=[2, 2]), (3, 3), (1, 1), (0, 0), (2, 2)),
    ((1, 2, 7, 9), dict(kernel_h=2, kernel_w=3, stride_h=1, stride_w=2, pad_t=1, pad_l=0,
                        pad_b=1, pad_r=1), (2, 3), (1, 2), (1, 0), (1, 1)),
]


def _out_sizes(shape, args, kernels, strides, heads, dilations):
    if args.get("legacy_pad") == 3:
        return tuple(ceil_out(n, k, s, h) for n, k, s, h in zip(shape[2:], kernels, strides, heads))
    tails = heads
    if "pad_b" in args:
        tails = (args["pad_b"], args["pad_r"])
    return tuple((n + h + t - (d * (k - 1) + 1)) // s + 1 for n, h, t, k, s, d in
                 zip(shape[2:], heads, tails, kernels, strides, dilations))


def _tie_heavy(shape, dtype=np.float32, seed=0):
    """Values from {0, 1, 2}: most windows hold several equal maxima."""
    return np.random.RandomState(seed).randint(0, 3, shape).astype(dtype)


@pytest.mark.parametrize("case", CASES_2D, ids=lambda c: str(c[1]))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tied_maxima_all_get_the_gradient_bit_for_bit(case, dtype):
    shape, args, kernels, strides, heads, dilations = case
    x = _tie_heavy(shape, dtype)
    out_sizes = _out_sizes(shape, args, kernels, strides, heads, dilations)
    dy = np.random.RandomState(1).randn(shape[0], shape[1], *out_sizes).astype(dtype)
    y_ref, dx_ref = caffe2_max_pool(x, kernels, strides, heads, out_sizes, dilations, dy)
    X = torch.from_numpy(x).requires_grad_()
    Y = run_op("MaxPool", [X], **args)
    (dX,) = grad_of(Y, [X], torch.from_numpy(dy))
    assert np.array_equal(Y.detach().numpy(), y_ref)
    assert np.array_equal(dX.numpy(), dx_ref)


@pytest.mark.parametrize("spatial", [1, 3])
def test_one_and_three_spatial_dims(spatial):
    shape = (2, 2) + (7,) * spatial
    x = _tie_heavy(shape)
    kernels, strides = (3,) * spatial, (2,) * spatial
    out_sizes = (3,) * spatial
    dy = np.random.RandomState(1).randn(2, 2, *out_sizes).astype(np.float32)
    y_ref, dx_ref = caffe2_max_pool(x, kernels, strides, (0,) * spatial, out_sizes,
                                    (1,) * spatial, dy)
    X = torch.from_numpy(x).requires_grad_()
    Y = run_op("MaxPool", [X], kernels=list(kernels), strides=list(strides))
    (dX,) = grad_of(Y, [X], torch.from_numpy(dy))
    assert np.array_equal(Y.detach().numpy(), y_ref)
    assert np.array_equal(dX.numpy(), dx_ref)


def test_nhwc_order_matches_nchw():
    x = _tie_heavy((2, 3, 9, 9))
    dy = np.random.RandomState(1).randn(2, 3, 4, 4).astype(np.float32)
    _, dx_ref = caffe2_max_pool(x, (3, 3), (2, 2), (0, 0), (4, 4), (1, 1), dy)
    X = torch.from_numpy(x.transpose(0, 2, 3, 1).copy()).requires_grad_()
    Y = run_op("MaxPool", [X], kernel=3, stride=2, order="NHWC")
    (dX,) = grad_of(Y, [X], torch.from_numpy(dy.transpose(0, 2, 3, 1).copy()))
    assert np.array_equal(dX.numpy().transpose(0, 3, 1, 2), dx_ref)


def test_nan_propagates_forward_and_gets_no_gradient():
    x = _tie_heavy((1, 1, 5, 5))
    x[0, 0, 0, 0] = np.nan
    X = torch.from_numpy(x).requires_grad_()
    Y = run_op("MaxPool", [X], kernel=3, stride=2)
    assert torch.isnan(Y[0, 0, 0, 0]) and torch.isfinite(Y[0, 0, 1:, 1:]).all()
    (dX,) = grad_of(Y, [X], torch.ones_like(Y))
    assert dX[0, 0, 0, 0] == 0  # the NaN equals no max


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled_loop", "torch_ops"])
def test_large_windows(compiled, monkeypatch):
    """A 6x6 window: the compiled backward (bit for bit) and the torch-ops rule it falls back
    to for what it does not take (another summation order)."""
    shape = (1, 2, 12, 12)
    x = _tie_heavy(shape)
    if not compiled:
        monkeypatch.setattr(max_pool_kernel, "supports", lambda x: False)
    dy = np.random.RandomState(1).randn(1, 2, 4, 4).astype(np.float32)
    y_ref, dx_ref = caffe2_max_pool(x, (6, 6), (2, 2), (0, 0), (4, 4), (1, 1), dy)
    X = torch.from_numpy(x).requires_grad_()
    Y = run_op("MaxPool", [X], kernel=6, stride=2)
    (dX,) = grad_of(Y, [X], torch.from_numpy(dy))
    assert np.array_equal(Y.detach().numpy(), y_ref)
    if compiled:
        assert np.array_equal(dX.numpy(), dx_ref)
    else:
        np.testing.assert_allclose(dX.numpy(), dx_ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", [c for c in CASES if c["op_type"] == "MaxPool"],
                         ids=lambda c: c["name"])
def test_caffe2_fixture_gradients_bit_for_bit(case):
    data = _load_case(case)
    outputs, grads = run_case(case, data)
    for name in case["outputs"]:
        assert np.array_equal(outputs[name], data["out:" + name])
    for name in case["grads"]:
        assert np.array_equal(grads[name], data["grad:" + name])


def test_random_geometries_bit_for_bit():
    """1-3 spatial dims, strides larger than the kernel (rows no window reaches), dilation and
    padding, on tie-heavy integers: the separable maxima and the compiled backward against
    Caffe2's loops."""
    rng = np.random.RandomState(0)
    checked = 0
    for _ in range(60):
        nd = rng.choice([1, 2, 3])
        sizes, kernels = tuple(rng.randint(3, 9, nd)), tuple(rng.randint(1, 4, nd))
        strides, dilations = tuple(rng.randint(1, 4, nd)), tuple(rng.randint(1, 3, nd))
        spans = [d * (k - 1) + 1 for k, d in zip(kernels, dilations)]
        heads = tuple(int(min(h, span // 2)) for h, span in zip(rng.randint(0, 2, nd), spans))
        outs = tuple((n + 2 * h - span) // s + 1
                     for n, h, span, s in zip(sizes, heads, spans, strides))
        if min(outs) < 1:
            continue
        x = rng.randint(0, 3, (2, 3) + sizes).astype(np.float32)
        dy = rng.randn(2, 3, *outs).astype(np.float32)
        y_ref, dx_ref = caffe2_max_pool(x, kernels, strides, heads, outs, dilations, dy)
        X = torch.from_numpy(x)
        Y = max_pool_kernel.window_max(X, kernels, strides, heads, heads, dilations)
        dX = max_pool_kernel.backward(X, Y, torch.from_numpy(dy), list(kernels), list(strides),
                                      list(heads), list(dilations))
        assert np.array_equal(Y.numpy(), y_ref), (sizes, kernels, strides, dilations, heads)
        assert np.array_equal(dX.numpy(), dx_ref), (sizes, kernels, strides, dilations, heads)
        checked += 1
    assert checked >= 40
