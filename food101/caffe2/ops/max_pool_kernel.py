"""Caffe2's CPU max pooling with its tie rule, as two small compiled loops (numba).

Caffe2's CPU `MaxPoolGradient` gives dY in full to *every* input equal to its window's max;
torch's kernel gives it to one. Finding the ties takes a scan of every window, which is what
the forward pass already does, so the forward records them:

    forward   per window: max (NaN wins, as torch's kernel) and a bit mask of the taps that
              equal it (int32; bit t = tap t of the window in raster order)
    backward  per window in raster order: dX[tap] += dY for each set bit

so the backward is one scatter over the output, like torch's index-based backward (int32 masks
instead of int64 indices), and accumulates in Caffe2's order (windows in raster order,
starting from zero): the gradients equal Caffe2's bit for bit.

numba ships LLVM in its wheel, so this installs without a C++ toolchain. The loops release the
GIL and run planes (N x C) in a small thread pool sized like torch's intra-op pool; numba's own
parallel layer is not used (its OpenMP layer aborts in forked children).

Shapes are 3-D (planes, D, H, W); 1-D and 2-D pooling pass size-1 leading dims.
"""
import concurrent.futures
import math
import os
import threading

import numba
import numpy as np
import torch

MAX_TAPS = 31  # taps per window that fit an int32 mask
THREADS = 1
_DTYPES = (torch.float32, torch.float64)


def supports(x, kernels):
    """True when the compiled loops can pool `x` (a CPU float32/float64 tensor)."""
    return (x.device.type == "cpu" and x.dtype in _DTYPES and 1 <= len(kernels) <= 3
            and math.prod(kernels) <= MAX_TAPS)


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
def _forward_planes(x, y, ties, start, stop, size, out, kernel, stride, pad, dilation):
    """x: planes x (D*H*W), y and ties: planes x (Do*Ho*Wo), C order."""
    D, H, W = size
    Do, Ho, Wo = out
    kd, kh, kw = kernel
    spans = ((kd - 1) * dilation[0] + 1, (kh - 1) * dilation[1] + 1, (kw - 1) * dilation[2] + 1)
    offsets = _tap_offsets(size, kernel, dilation)
    taps = offsets.shape[0]
    for p in range(start, stop):
        o = 0
        for od in range(Do):
            d0 = od * stride[0] - pad[0]
            for oh in range(Ho):
                h0 = oh * stride[1] - pad[1]
                for ow in range(Wo):
                    w0 = ow * stride[2] - pad[2]
                    m = -np.inf
                    mask = 0
                    if (d0 >= 0 and h0 >= 0 and w0 >= 0 and d0 + spans[0] <= D
                            and h0 + spans[1] <= H and w0 + spans[2] <= W):
                        # branch-free: the max, then the taps equal to it (a NaN anywhere
                        # makes the max NaN, as in torch's kernel, and no tap equals it)
                        base = (d0 * H + h0) * W + w0
                        nan = False
                        for tap in range(taps):
                            v = x[p, base + offsets[tap]]
                            m = v if v > m else m
                            nan |= v != v
                        if nan:
                            m = np.nan
                        for tap in range(taps):
                            mask |= np.int64(x[p, base + offsets[tap]] == m) << tap
                    else:  # a window reaching into the padding: only in-bounds taps count
                        tap = -1
                        for a in range(kd):
                            d = d0 + a * dilation[0]
                            for b in range(kh):
                                h = h0 + b * dilation[1]
                                for c in range(kw):
                                    tap += 1
                                    w = w0 + c * dilation[2]
                                    if d < 0 or d >= D or h < 0 or h >= H or w < 0 or w >= W:
                                        continue
                                    v = x[p, (d * H + h) * W + w]
                                    if v > m:
                                        m = v
                                        mask = 1 << tap
                                    elif v == m:
                                        mask |= 1 << tap
                                    elif v != v:
                                        m = v
                                        mask = 0
                    y[p, o] = m
                    ties[p, o] = mask
                    o += 1


# lowest set bit -> its index, without a data-dependent branch (de Bruijn sequence 0x077CB531)
_DEBRUIJN = np.array([0, 1, 28, 2, 29, 14, 24, 3, 30, 22, 20, 15, 25, 17, 4, 8, 31, 27, 13, 23,
                      21, 19, 16, 7, 26, 12, 18, 6, 11, 5, 10, 9], np.int64)


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _backward_planes(dy, ties, dx, start, stop, size, out, kernel, stride, pad, dilation):
    """dx[p] += dy at each set bit of ties, windows in raster order (Caffe2's order)."""
    D, H, W = size
    Do, Ho, Wo = out
    offsets = _tap_offsets(size, kernel, dilation)
    for p in range(start, stop):
        o = 0
        for od in range(Do):
            d0 = od * stride[0] - pad[0]
            for oh in range(Ho):
                h0 = oh * stride[1] - pad[1]
                for ow in range(Wo):
                    mask = np.int64(ties[p, o])
                    g = dy[p, o]
                    o += 1
                    base = (d0 * H + h0) * W + ow * stride[2] - pad[2]
                    while mask:  # set bits are in-bounds taps; usually exactly one
                        low = mask & -mask
                        tap = _DEBRUIJN[((low * 0x077CB531) & 0xFFFFFFFF) >> 27]
                        dx[p, base + offsets[tap]] += g
                        mask ^= low


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


def _run(kernel_fn, planes, *args):
    workers = max(1, min(THREADS or torch.get_num_threads(), planes))
    if workers == 1 or planes < 2 * workers:
        kernel_fn(*args[:3], 0, planes, *args[3:])
        return
    bounds = [planes * i // workers for i in range(workers + 1)]
    futures = [_executor().submit(kernel_fn, *args[:3], lo, hi, *args[3:])
               for lo, hi in zip(bounds, bounds[1:]) if hi > lo]
    for f in futures:
        f.result()


def _as_3d(values, fill):
    return (fill,) * (3 - len(values)) + tuple(int(v) for v in values)


def _geometry(in_sizes, out_sizes, kernels, strides, heads, dilations):
    return (_as_3d(in_sizes, 1), _as_3d(out_sizes, 1), _as_3d(kernels, 1), _as_3d(strides, 1),
            _as_3d(heads, 0), _as_3d(dilations, 1))


def forward(x, kernels, strides, heads, dilations, out_sizes):
    """x: N x C x spatial (1-3 dims), CPU float -> (Y, ties)."""
    planes = x.shape[0] * x.shape[1]
    x2 = x.detach().contiguous().reshape(planes, -1)
    y = torch.empty((planes, math.prod(out_sizes)), dtype=x.dtype)
    ties = torch.empty(y.shape, dtype=torch.int32)
    _run(_forward_planes, planes, x2.numpy(), y.numpy(), ties.numpy(),
         *_geometry(x.shape[2:], out_sizes, kernels, strides, heads, dilations))
    shape = tuple(x.shape[:2]) + tuple(out_sizes)
    return y.reshape(shape), ties.reshape(shape)


def backward(dY, ties, input_shape, kernels, strides, heads, dilations):
    """dX with dY added to every tied maximum of each window (Caffe2's MaxPoolGradient)."""
    planes = input_shape[0] * input_shape[1]
    dy2 = dY.detach().contiguous().reshape(planes, -1)
    dx = torch.zeros((planes, math.prod(input_shape[2:])), dtype=dY.dtype)
    _run(_backward_planes, planes, dy2.numpy(), ties.reshape(planes, -1).numpy(), dx.numpy(),
         *_geometry(input_shape[2:], dY.shape[2:], kernels, strides, heads, dilations))
    return dx.reshape(input_shape)
