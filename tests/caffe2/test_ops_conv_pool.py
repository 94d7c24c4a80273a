"""Conv and pooling beyond the recorded cases: NHWC layouts, Caffe's ceil-mode sizes
(legacy_pad=3), ties in max pooling, asymmetric pads, argument forms and their errors."""
import numpy as np
import pytest
import torch

from food101.caffe2.errors import OperatorError
from tests.support.op_runner import grad_of, run_op

rng = np.random.RandomState(0)


def randn(*shape):
    return torch.tensor(rng.randn(*shape), dtype=torch.float32)


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous()


def nchw(t):
    return t.permute(0, 3, 1, 2)


@pytest.mark.parametrize("args", [
    dict(kernel=3),
    dict(kernel=3, stride=2, pad=1),
    dict(kernel=3, stride=2, pad_t=1, pad_l=0, pad_b=2, pad_r=1),
    dict(kernel_h=3, kernel_w=1, stride_h=2, stride_w=1),
    dict(kernel=3, dilation=2),
    dict(kernels=[3, 3], strides=[1, 2], pads=[0, 1, 2, 1]),
    dict(kernel=3, group=2),
    dict(kernel=3, stride=2, legacy_pad=2),  # SAME
])
def test_conv_nhwc_equals_nchw(args):
    group = args.get("group", 1)
    kh, kw = (args.get("kernel_h", 3), args.get("kernel_w", 1)) if "kernel_h" in args else (3, 3)
    X, W, b = randn(2, 4, 9, 8), randn(6, 4 // group, kh, kw), randn(6)
    expected = run_op("Conv", [X, W, b], **args)
    # NHWC: X is N x H x W x C and the filter M x kH x kW x C/group
    got = run_op("Conv", [nhwc(X), nhwc(W), b], order="NHWC", **args)
    np.testing.assert_allclose(nchw(got).numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_conv_same_padding_keeps_ceil_of_size_over_stride():
    X, W = randn(1, 2, 7, 8), randn(3, 2, 3, 3)
    assert run_op("Conv", [X, W], kernel=3, legacy_pad=2).shape == (1, 3, 7, 8)
    assert run_op("Conv", [X, W], kernel=3, stride=2, legacy_pad=2).shape == (1, 3, 4, 4)
    assert run_op("Conv", [X, W], kernel=3, legacy_pad=1).shape == (1, 3, 5, 6)  # VALID


def test_conv_channel_mismatch_names_both_shapes():
    with pytest.raises(OperatorError) as info:
        run_op("Conv", [randn(1, 3, 5, 5), randn(4, 2, 3, 3), randn(4)], kernel=3)
    assert "[1, 3, 5, 5]" in str(info.value) and "[4, 2, 3, 3]" in str(info.value)


def test_conv_argument_errors():
    X, W = randn(1, 2, 5, 5), randn(3, 2, 3, 3)
    with pytest.raises(OperatorError, match="kernel size must be set"):
        run_op("Conv", [X, W])
    with pytest.raises(OperatorError, match="legacy_pad"):
        run_op("Conv", [X, W], kernel=3, pad=1, legacy_pad=2)
    with pytest.raises(OperatorError, match="does not match the kernel"):
        run_op("Conv", [X, W], kernel=5)


def test_conv_1d_and_3d_kernels():
    X1, W1 = randn(2, 3, 10), randn(4, 3, 3)
    expected = torch.nn.functional.conv1d(X1, W1, stride=2, padding=1)
    got = run_op("Conv", [X1, W1], kernels=[3], strides=[2], pads=[1, 1])
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    X3, W3 = randn(1, 2, 5, 6, 7), randn(3, 2, 3, 3, 3)
    assert run_op("Conv", [X3, W3], kernels=[3, 3, 3]).shape == (1, 3, 3, 4, 5)


# ---------------------------------------------------------------------------------- pooling
def caffe2_pool_reference(X, kind, kernel, stride, pads):
    """Caffe2's CPU pooling loops (pool_op.cc), forward and the gradient of sum(Y * dY)."""
    N, C, H, W = X.shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = kernel, stride, pads
    Ho, Wo = (H + pt + pb - kh) // sh + 1, (W + pl + pr - kw) // sw + 1
    Y = np.zeros((N, C, Ho, Wo), np.float64)
    dY = np.arange(Y.size, dtype=np.float64).reshape(Y.shape) % 7 + 1
    dX = np.zeros(X.shape, np.float64)
    for i in range(Ho):
        for j in range(Wo):
            h0, w0 = i * sh - pt, j * sw - pl
            h1, w1 = min(h0 + kh, H), min(w0 + kw, W)
            h0, w0 = max(h0, 0), max(w0, 0)
            window = X[:, :, h0:h1, w0:w1]
            if kind == "max":
                Y[:, :, i, j] = window.max(axis=(2, 3))
                hit = window == Y[:, :, i, j][:, :, None, None]  # every tie gets the gradient
                dX[:, :, h0:h1, w0:w1] += hit * dY[:, :, i, j][:, :, None, None]
            else:
                count = (h1 - h0) * (w1 - w0)  # padding excluded
                Y[:, :, i, j] = window.mean(axis=(2, 3))
                dX[:, :, h0:h1, w0:w1] += dY[:, :, i, j][:, :, None, None] / count
    return Y, dY, dX


@pytest.mark.parametrize("kind,op_type", [("max", "MaxPool"), ("avg", "AveragePool")])
@pytest.mark.parametrize("args,pads", [
    (dict(kernel=3, stride=2), (0, 0, 0, 0)),
    (dict(kernel=3, stride=2, pad=1), (1, 1, 1, 1)),
    (dict(kernel=2, stride=2, pad_t=0, pad_l=1, pad_b=1, pad_r=0), (0, 1, 1, 0)),
    # 10 -> Caffe's ceil-mode 5 (floor: 4): Caffe2 pads the tail by 2
    (dict(kernel=3, stride=2, legacy_pad=3), (0, 0, 2, 2)),
    (dict(kernel=3, stride=2, pad=1, legacy_pad=3), (1, 1, 3, 3)),  # 6 windows (floor: 5)
])
def test_pooling_matches_caffe2_loops_with_ties(kind, op_type, args, pads):
    # small integers: many equal values inside a window, as after a Relu
    X = np.maximum(rng.randint(-3, 4, size=(2, 3, 10, 10)), 0).astype(np.float32)
    expected, dY, dX = caffe2_pool_reference(X.astype(np.float64), kind, (args["kernel"],) * 2,
                                             (args["stride"],) * 2, pads)
    x = torch.tensor(X, requires_grad=True)
    Y = run_op(op_type, [x], **args)
    np.testing.assert_allclose(Y.detach().numpy(), expected, rtol=1e-6, atol=1e-6)
    (got,) = grad_of(Y, [x], torch.tensor(dY, dtype=torch.float32))
    np.testing.assert_allclose(got.numpy(), dX, rtol=1e-6, atol=1e-5)
    # NHWC gives the same numbers in its own layout
    x_nhwc = torch.tensor(X).permute(0, 2, 3, 1).contiguous().requires_grad_(True)
    Y_nhwc = run_op(op_type, [x_nhwc], order="NHWC", **args)
    np.testing.assert_allclose(nchw(Y_nhwc).detach().numpy(), expected, rtol=1e-6, atol=1e-6)
    (got_nhwc,) = grad_of(Y_nhwc, [x_nhwc], nhwc(torch.tensor(dY, dtype=torch.float32)))
    np.testing.assert_allclose(nchw(got_nhwc).numpy(), dX, rtol=1e-6, atol=1e-5)


def test_global_max_pool_gives_every_tie_the_gradient():
    x = torch.zeros(1, 2, 3, 3, requires_grad=True)
    Y = run_op("MaxPool", [x], global_pooling=1)
    assert Y.shape == (1, 2, 1, 1)
    (g,) = grad_of(Y, [x], torch.tensor([2.0, 3.0]).reshape(1, 2, 1, 1))
    np.testing.assert_array_equal(g[0, 0].numpy(), np.full((3, 3), 2.0))
    np.testing.assert_array_equal(g[0, 1].numpy(), np.full((3, 3), 3.0))


def test_max_pool_without_autograd_equals_the_tie_aware_path():
    X = randn(2, 4, 11, 11)
    plain = run_op("MaxPool", [X], kernel=3, stride=2, pad=1, legacy_pad=3)
    tracked = run_op("MaxPool", [X.clone().requires_grad_(True)], kernel=3, stride=2, pad=1, legacy_pad=3)
    np.testing.assert_array_equal(plain.numpy(), tracked.detach().numpy())


@pytest.mark.parametrize("size,legacy,floor", [(113, 56, 56), (56, 28, 27), (28, 14, 13), (10, 5, 4)])
def test_caffe_legacy_pooling_sizes(size, legacy, floor):
    """SqueezeNet at 227: conv1 gives 113, pool1 56, pool3 28, pool5 14 (Caffe's ceil mode)."""
    X = randn(1, 2, size, size)
    for op_type in ("MaxPool", "AveragePool"):
        assert run_op(op_type, [X], kernel=3, stride=2, legacy_pad=3).shape[2:] == (legacy, legacy)
        assert run_op(op_type, [X], kernel=3, stride=2).shape[2:] == (floor, floor)
        Y = run_op(op_type, [nhwc(X)], kernel=3, stride=2, legacy_pad=3, order="NHWC")
        assert Y.shape[1:3] == (legacy, legacy)


def test_caffe_legacy_pooling_drops_a_window_that_starts_in_the_padding():
    # in 5, pad 1, k 2, s 2: ceil((5 + 2 - 2) / 2) + 1 = 4, but the 4th window would start at
    # 6 = in + pad, in the tail padding: Caffe (and Caffe2) keep 3 windows. In 6 keeps all 4.
    assert run_op("MaxPool", [randn(1, 1, 5, 5)], kernel=2, stride=2, pad=1, legacy_pad=3).shape[2:] == (3, 3)
    assert run_op("MaxPool", [randn(1, 1, 6, 6)], kernel=2, stride=2, pad=1, legacy_pad=3).shape[2:] == (4, 4)


def test_average_pool_count_include_pad():
    X = torch.ones(1, 1, 4, 4)
    Y = run_op("AveragePool", [X], kernel=3, stride=1, pad=1, count_include_pad=1)
    assert Y[0, 0, 0, 0].item() == pytest.approx(4 / 9)
    Y = run_op("AveragePool", [X], kernel=3, stride=1, pad=1)
    assert Y[0, 0, 0, 0].item() == pytest.approx(1.0)


def test_global_pooling_on_nhwc_and_its_argument_check():
    X = randn(2, 3, 5, 4)
    got = run_op("AveragePool", [nhwc(X)], global_pooling=1, order="NHWC")
    np.testing.assert_allclose(got.reshape(2, 3).numpy(), X.mean(dim=(2, 3)).numpy(), rtol=1e-6)
    with pytest.raises(OperatorError, match="global_pooling"):
        run_op("MaxPool", [X], global_pooling=1, stride=2)


def test_pool_aliases_and_1d():
    X = randn(2, 3, 9)
    Y = run_op("MaxPool1D", [X], kernels=[3], strides=[2])
    np.testing.assert_allclose(Y.numpy(), torch.nn.functional.max_pool1d(X, 3, 2).numpy())
    Y = run_op("AveragePool1D", [X], kernels=[3], strides=[2], pads=[1, 1])
    np.testing.assert_allclose(
        Y.numpy(), torch.nn.functional.avg_pool1d(X, 3, 2, 1, count_include_pad=False).numpy(), rtol=1e-6)
    assert run_op("MaxPool2D", [randn(1, 1, 4, 4)], kernel=2, stride=2).shape == (1, 1, 2, 2)


def test_cpu_tie_rule_can_be_switched_to_torchs_one_max_rule(monkeypatch):
    """With CPU_TIE_GRADIENT off, MaxPool's gradient is torch's own (one max per window)."""
    from food101.caffe2.ops import pool
    x = torch.zeros(1, 1, 4, 4)  # every window ties
    monkeypatch.setattr(pool, "CPU_TIE_GRADIENT", False)
    leaf = x.clone().requires_grad_()
    y = pool.max_pool(leaf, kernels=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0], dilations=[1, 1])
    (grad,) = torch.autograd.grad(y.sum(), leaf)
    reference = x.clone().requires_grad_()
    (expected,) = torch.autograd.grad(torch.nn.functional.max_pool2d(reference, 2, 2).sum(), reference)
    assert torch.equal(grad, expected) and grad.sum() == 4
    monkeypatch.setattr(pool, "CPU_TIE_GRADIENT", True)
    leaf = x.clone().requires_grad_()
    y = pool.max_pool(leaf, kernels=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0], dilations=[1, 1])
    (grad,) = torch.autograd.grad(y.sum(), leaf)
    assert grad.sum() == 16  # Caffe2's CPU rule: all four tied maxima of each window
