"""Max and average pooling (Caffe2's MaxPool, AveragePool; 1-D to 3-D, NCHW or NHWC).

Geometry comes from conv_pool_base (legacy_pad=3 gives Caffe's ceil-mode sizes, as the Model
Zoo nets translated from Caffe use). Caffe2 semantics kept exactly:
- AveragePool divides by the number of *input* elements under the window, padding excluded
  (`count_include_pad=1` divides by the whole window, padding included);
- MaxPool's gradient goes to every input equal to the window's max, ties included, as
  Caffe2's CPU MaxPoolGradient does (max_pool_kernel); on CUDA, as Caffe2's cuDNN engine, to one
  max per window (torch's kernel). Without autograd, on the CPU, max_pool_kernel's separable
  passes compute the maxima.
"""
import itertools
import math

import torch
import torch.nn.functional as F

from food101.caffe2.errors import enforce
from food101.caffe2.ops import max_pool_kernel
from food101.caffe2.ops.common import channels_first, restore_order, with_max_gradient
from food101.caffe2.ops.conv_pool_base import NOTSET, pad_widths, resolve_window, window_arguments
from food101.caffe2.ops.registry import operator

_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
# Caffe2's CPU MaxPoolGradient rule (every tied maximum gets dY), through max_pool_kernel at
# less than the cost of torch's own max pooling; False selects torch's one-max rule instead.
CPU_TIE_GRADIENT = True
_AVG_POOL = {2: F.avg_pool2d, 3: F.avg_pool3d}


def _window(X, order, kernels, strides, pads, dilations, legacy_pad, global_pooling):
    enforce(X.dim() >= 3, "pooling needs an N x C x spatial... input, got shape %s" % list(X.shape))
    x = channels_first(X, order)
    sizes = tuple(x.shape[2:])
    kernels, heads, tails, _ = resolve_window(sizes, kernels, strides, pads, dilations,
                                              legacy_pad, global_pooling)
    if global_pooling:
        strides, dilations = (1,) * len(sizes), (1,) * len(sizes)
    return x, kernels, strides, heads, tails, dilations


def _empty_result(x, X, order, kernels, strides, pads, dilations, legacy_pad, global_pooling):
    """The (empty) output of pooling an empty batch, or None for a non-empty input. Caffe2
    returns N=0 outputs of the windowed shape; torch's kernels refuse empty inputs."""
    if x.numel():
        return None
    *_, outs = resolve_window(tuple(x.shape[2:]), kernels, strides, pads, dilations, legacy_pad,
                              global_pooling)
    # kept in the graph so a gradient op sees an (empty) gradient, not none
    Y = x.new_zeros(tuple(x.shape[:2]) + tuple(outs)) + x.sum() * 0
    return restore_order(Y, order)


@operator("MaxPool", prepare=window_arguments, aliases=("MaxPool1D", "MaxPool2D", "MaxPool3D"))
def max_pool(X, *, kernels=None, strides=None, pads=None, dilations=None, legacy_pad=NOTSET,
             global_pooling=0, order="NCHW",
             # folded into kernels/strides/pads/dilations by window_arguments
             kernel=None, kernel_h=None, kernel_w=None, stride=None, stride_h=None, stride_w=None,
             pad=None, pad_t=None, pad_l=None, pad_b=None, pad_r=None,
             dilation=None, dilation_h=None, dilation_w=None):
    """The max of each window."""
    x, kernels, strides, heads, tails, dilations = _window(
        X, order, kernels, strides, pads, dilations, legacy_pad, global_pooling)
    empty = _empty_result(x, X, order, kernels, strides, pads, dilations, legacy_pad,
                          global_pooling)
    if empty is not None:
        return empty
    ndim = len(kernels)
    if global_pooling:
        dims = tuple(range(2, x.dim()))
        with torch.no_grad():
            Y = x.amax(dim=dims, keepdim=True)
        return restore_order(with_max_gradient(Y, [x], reduce_dims=dims), order)
    tie_rule = x.requires_grad and not x.is_cuda and CPU_TIE_GRADIENT
    compiling = torch.compiler.is_compiling()
    if not x.is_cuda and not x.requires_grad and x.is_floating_point() and not compiling:
        # inference on the CPU: separable passes, a quarter of the cost of torch's kernel
        Y = max_pool_kernel.window_max(x, kernels, strides, heads, tails, dilations)
        return restore_order(Y, order)
    if not tie_rule:
        ceil_mode = _torch_window(tuple(x.shape[2:]), tuple(kernels), tuple(strides), heads, tails,
                                  tuple(dilations))
        if ceil_mode is not None:  # torch pads with -inf itself, no padded copy
            Y = _MAX_POOL[ndim](x, kernels, strides, heads, dilations, ceil_mode=ceil_mode)
            return restore_order(Y, order)
    if tie_rule and max_pool_kernel.supports(x):
        Y = _CompiledTiedMaxPool.apply(x, tuple(kernels), tuple(strides), tuple(heads),
                                       tuple(tails), tuple(dilations))
        return restore_order(Y, order)
    if any(heads) or any(tails):
        x = F.pad(x, pad_widths(heads, tails), value=float("-inf"))
    if not tie_rule:
        # On CUDA Caffe2 ran cuDNN's pooling, whose gradient goes to one max per window: torch's
        # kernel does the same, fast. The CPU keeps Caffe2's CPU rule (every tied max).
        return restore_order(_MAX_POOL[ndim](x, kernels, strides, 0, dilations), order)
    Y = _TiedMaxPool.apply(x, tuple(kernels), tuple(strides), tuple(dilations))
    return restore_order(Y, order)


def _torch_window(sizes, kernels, strides, heads, tails, dilations):
    """ceil_mode (False or True) under which torch's pooling with padding `heads` covers the
    same windows as (heads, tails), e.g. Caffe's ceil-mode legacy_pad=3; None if neither does.
    Memoised: a net meets the same few geometries every iteration."""
    key = (sizes, kernels, strides, heads, tails, dilations)
    if key not in _TORCH_WINDOWS:
        _TORCH_WINDOWS[key] = _match_torch_window(*key)
    return _TORCH_WINDOWS[key]


_TORCH_WINDOWS = {}


def _match_torch_window(sizes, kernels, strides, heads, tails, dilations):
    spans = [d * (k - 1) + 1 for k, d in zip(kernels, dilations)]
    if any(2 * h > span for h, span in zip(heads, spans)):
        return None  # torch allows at most half a window of padding
    wanted = [(n + h + t - span) // s + 1
              for n, h, t, span, s in zip(sizes, heads, tails, spans, strides)]
    for ceil_mode in (False, True):
        outs = []
        for n, h, span, s in zip(sizes, heads, spans, strides):
            extent = n + 2 * h - span
            out = (-(-extent // s) if ceil_mode else extent // s) + 1
            if ceil_mode and (out - 1) * s >= n + h:  # torch: the last window starts inside
                out -= 1
            outs.append(out)
        if outs == wanted:
            return ceil_mode
    return None


class _CompiledTiedMaxPool(torch.autograd.Function):
    """Caffe2's CPU MaxPool and MaxPoolGradient through max_pool_kernel: separable max passes
    forward; backward, each window's tied maxima found again from X and Y get dY."""

    @staticmethod
    def forward(ctx, x, kernels, strides, heads, tails, dilations):
        Y = max_pool_kernel.window_max(x, kernels, strides, heads, tails, dilations)
        ctx.save_for_backward(x, Y)
        ctx.geometry = list(kernels), list(strides), list(heads), list(dilations)
        return Y

    @staticmethod
    def backward(ctx, dY):
        x, Y = ctx.saved_tensors
        dX = max_pool_kernel.backward(x, Y, dY, *ctx.geometry)
        return dX, None, None, None, None, None


def _window_taps(x, out_sizes, kernels, strides, dilations):
    """For each kernel offset, the input elements it covers in every window (output-shaped)."""
    for offset in itertools.product(*(range(k) for k in kernels)):
        index = tuple(slice(o * d, o * d + (n - 1) * s + 1, s)
                      for o, d, n, s in zip(offset, dilations, out_sizes, strides))
        yield (slice(None), slice(None)) + index


class _TiedMaxPool(torch.autograd.Function):
    """The same rule in torch ops, for what the compiled loop does not take (half precision):
    torch's max-pool forward; backward one output-sized slice per kernel offset."""

    @staticmethod
    def forward(ctx, x, kernels, strides, dilations):
        Y = _MAX_POOL[len(kernels)](x, kernels, strides, 0, dilations)
        ctx.save_for_backward(x, Y)
        ctx.geometry = kernels, strides, dilations
        return Y

    @staticmethod
    def backward(ctx, dY):
        x, Y = ctx.saved_tensors
        kernels, strides, dilations = ctx.geometry
        dX = torch.zeros_like(x)
        out_sizes = tuple(Y.shape[2:])
        if math.prod(out_sizes) < math.prod(kernels):
            # few large windows (e.g. one covering the image): one step per window, not per tap
            spatial = (None,) * len(kernels)
            for pos in itertools.product(*(range(n) for n in out_sizes)):
                index = (slice(None), slice(None)) + tuple(
                    slice(p * st, p * st + (k - 1) * d + 1, d)
                    for p, st, k, d in zip(pos, strides, kernels, dilations))
                at = (Ellipsis,) + pos + spatial
                dX[index] += dY[at] * (x[index] == Y[at])
            return dX, None, None, None
        for index in _window_taps(x, out_sizes, kernels, strides, dilations):
            dX[index] += dY * (x[index] == Y)
        return dX, None, None, None


@operator("AveragePool", prepare=window_arguments,
          aliases=("AveragePool1D", "AveragePool2D", "AveragePool3D"))
def average_pool(X, *, kernels=None, strides=None, pads=None, dilations=None, legacy_pad=NOTSET,
                 global_pooling=0, order="NCHW", count_include_pad=0,
                 # folded into kernels/strides/pads/dilations by window_arguments
                 kernel=None, kernel_h=None, kernel_w=None, stride=None, stride_h=None,
                 stride_w=None, pad=None, pad_t=None, pad_l=None, pad_b=None, pad_r=None,
                 dilation=None, dilation_h=None, dilation_w=None):
    """The mean of each window, over the input elements it covers (padding excluded)."""
    x, kernels, strides, heads, tails, dilations = _window(
        X, order, kernels, strides, pads, dilations, legacy_pad, global_pooling)
    empty = _empty_result(x, X, order, kernels, strides, pads, dilations, legacy_pad,
                          global_pooling)
    if empty is not None:
        return empty
    if global_pooling:
        return restore_order(x.mean(dim=tuple(range(2, x.dim())), keepdim=True), order)
    enforce(all(d == 1 for d in dilations), "AveragePool does not support dilation, got %s"
            % list(dilations))
    lifted = len(kernels) == 1  # torch has no divisor_override for 1-D: pool 1-D as N x C x L x 1
    if lifted:
        x = x.unsqueeze(-1)
        kernels, strides, heads, tails = kernels + (1,), strides + (1,), heads + (0,), tails + (0,)
    pool = _AVG_POOL[len(kernels)]
    # torch's own padding needs pad <= kernel / 2 and an unpadded input at least the kernel
    if heads == tails and all(2 * h <= k <= n for h, k, n in zip(heads, kernels, x.shape[2:])):
        Y = pool(x, kernels, strides, heads, count_include_pad=bool(count_include_pad))
    else:
        widths = pad_widths(heads, tails)
        if count_include_pad:
            Y = pool(F.pad(x, widths), kernels, strides)
        else:
            sums = pool(F.pad(x, widths), kernels, strides, divisor_override=1)
            ones = x.new_ones((1, 1) + tuple(x.shape[2:]))
            counts = pool(F.pad(ones, widths), kernels, strides, divisor_override=1)
            Y = sums / counts
    if lifted:
        Y = Y.squeeze(-1)
    return restore_order(Y, order)
