"""Caffe2's CPU max pooling, with its gradient's tie rule, at less than the cost of torch's.

Forward: the window maxima as separable passes, one strided `torch.maximum` per tap along each
spatial dim (3x3 windows: 2 + 2 passes). They are exact (a max is a max in any order), run
vectorised on torch's threads, and cost a quarter of torch's CPU max-pool kernel, which visits
every window tap by tap. NaN wins, as in torch's kernel.

Backward: Caffe2's CPU `MaxPoolGradient` gives dY in full to *every* input equal to its window's
max (torch's kernel gives it to one). A small compiled loop (numba) finds each window's tied
maxima again from the saved X and Y and adds dY to them, windows in raster order from zero:
Caffe2's order, so the gradients equal Caffe2's bit for bit.

numba ships LLVM in its wheel, so this installs without a C++ toolchain. The loop releases the
GIL and runs planes (N x C) in a small thread pool sized by THREADS; numba's own parallel layer
is not used (its OpenMP layer aborts in forked children).

Backward shapes are 3-D (planes, D, H, W); 1-D and 2-D pooling pass size-1 leading dims.
"""
import concurrent.futures
import math
import os
import threading
from typing import List

import numba
import numpy as np
import torch
import torch.nn.functional as F

from food101.caffe2.ops.conv_pool_base import pad_widths

THREADS = 0  # backward threads; 0: torch's intra-op thread count
_DTYPES = (torch.float32, torch.float64)


def supports(x):
    """True when the compiled backward can take `x` (a CPU float32/float64 tensor)."""
    return x.device.type == "cpu" and x.dtype in _DTYPES and 1 <= x.dim() - 2 <= 3


def window_max(x, kernels, strides, heads, tails, dilations):
    """The max of each window of x (N x C x spatial), padding (heads, tails) as -inf."""
    if any(heads) or any(tails):
        x = F.pad(x, pad_widths(heads, tails), value=float("-inf"))
    for dim, (k, s, d) in enumerate(zip(kernels, strides, dilations), start=2):
        outs = (x.shape[dim] - (k - 1) * d - 1) // s + 1
        taps = [x.narrow(dim, t * d, (outs - 1) * s + 1) for t in range(k)]
        if s > 1:
            taps = [tap[(slice(None),) * dim + (slice(None, None, s),)] for tap in taps]
        if k == 1:
            x = taps[0]
            continue
        x = torch.maximum(taps[0], taps[1])
        for tap in taps[2:]:
            torch.maximum(x, tap, out=x)
    return x


@numba.njit(nogil=True, cache=True)
def _tap_offsets(size, kernel, dilation):
    """tap (raster order in the window) -> offset from the window's first element."""
    _, H, W = size
    kd, kh, kw = kernel
    offsets = np.empty(kd * kh * kw, np.int64)
    t = 0
    for a in range(kd):
        for b in range(kh):
            for c in range(kw):
                offsets[t] = (a * dilation[0] * H + b * dilation[1]) * W + c * dilation[2]
                t += 1
    return offsets


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _backward_planes(x, y, dy, dx, zero, start, stop, size, out, kernel, stride, pad, dilation):
    """dx[p] = the sum of dy over the windows whose y each tap equals, windows in raster order
    (Caffe2's). All arrays are planes x flattened spatial, C order; zero is 0 in dx's dtype;
    dx comes uninitialised."""
    D, H, W = size
    Do, Ho, Wo = out
    kd, kh, kw = kernel
    spans = ((kd - 1) * dilation[0] + 1, (kh - 1) * dilation[1] + 1, (kw - 1) * dilation[2] + 1)
    offsets = _tap_offsets(size, kernel, dilation)
    for p in range(start, stop):
        o = 0
        zeroed = 0  # dx[p, :zeroed] is zero or accumulated: zeroed row by row just before use
        for od in range(Do):
            d0 = od * stride[0] - pad[0]
            for oh in range(Ho):
                h0 = oh * stride[1] - pad[1]
                # the last input row this output row's windows reach (while it is in cache)
                reach = (min(D - 1, d0 + spans[0] - 1) * H + min(H - 1, h0 + spans[1] - 1) + 1) * W
                if reach > zeroed:
                    dx[p, zeroed:reach] = zero
                    zeroed = reach
                for ow in range(Wo):
                    w0 = ow * stride[2] - pad[2]
                    m = y[p, o]
                    g = dy[p, o]
                    o += 1
                    if (d0 >= 0 and h0 >= 0 and w0 >= 0 and d0 + spans[0] <= D
                            and h0 + spans[1] <= H and w0 + spans[2] <= W):
                        base = (d0 * H + h0) * W + w0
                        for tap in range(offsets.shape[0]):
                            i = base + offsets[tap]
                            # branch-free: adding +0.0 leaves dx as it is (dx starts at +0.0
                            # and a sum is -0.0 only when both terms are)
                            dx[p, i] += g if x[p, i] == m else zero
                        continue
                    # a window reaching into the padding: only in-bounds taps count
                    for a in range(kd):
                        d = d0 + a * dilation[0]
                        if d < 0 or d >= D:
                            continue
                        for b in range(kh):
                            h = h0 + b * dilation[1]
                            if h < 0 or h >= H:
                                continue
                            for c in range(kw):
                                w = w0 + c * dilation[2]
                                if 0 <= w < W and x[p, (d * H + h) * W + w] == m:
                                    dx[p, (d * H + h) * W + w] += g
        dx[p, zeroed:] = zero  # rows no window reaches


_pool = None
_pool_lock = threading.Lock()


def _executor():
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(
                max(1, torch.get_num_threads()), thread_name_prefix="food101-maxpool")
        return _pool


def _forget_pool():  # a forked child has the pool object but none of its threads
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _run(kernel_fn, planes, arrays, geometry):
    workers = max(1, min(THREADS or torch.get_num_threads(), planes))
    if workers == 1:
        kernel_fn(*arrays, 0, planes, *geometry)
        return
    bounds = [planes * i // workers for i in range(workers + 1)]
    futures = [_executor().submit(kernel_fn, *arrays, lo, hi, *geometry)
               for lo, hi in zip(bounds, bounds[1:])]
    for f in futures:
        f.result()


def _as_3d(values, fill):
    return (fill,) * (3 - len(values)) + tuple(int(v) for v in values)


def _planes(t):
    return t.detach().contiguous().reshape(t.shape[0] * t.shape[1], -1).numpy()


# a custom op, so torch.compile graphs call the loop as one opaque kernel instead of tracing it
@torch.library.custom_op("food101::max_pool_tie_gradient", mutates_args=())
def backward(x: torch.Tensor, Y: torch.Tensor, dY: torch.Tensor, kernels: List[int],
             strides: List[int], heads: List[int], dilations: List[int]) -> torch.Tensor:
    """dX with dY added to every input equal to its window's max (Caffe2's MaxPoolGradient)."""
    dx = torch.empty((x.shape[0] * x.shape[1], math.prod(x.shape[2:])), dtype=x.dtype)
    zero = np.zeros((), dx.numpy().dtype)[()]
    geometry = (_as_3d(x.shape[2:], 1), _as_3d(Y.shape[2:], 1), _as_3d(kernels, 1),
                _as_3d(strides, 1), _as_3d(heads, 0), _as_3d(dilations, 1))
    _run(_backward_planes, dx.shape[0],
         (_planes(x), _planes(Y), _planes(dY.to(x.dtype)), dx.numpy(), zero), geometry)
    return dx.reshape(x.shape)


@backward.register_fake
def _backward_shape(x, Y, dY, kernels, strides, heads, dilations):
    return x.new_empty(x.shape)
