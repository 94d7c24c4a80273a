"""Helpers shared by several op families: axes, storage orders, Caffe2's max gradient.

Nothing here is registered as an op.
"""
import math

import torch

from food101.caffe2.errors import enforce


def canonical_axis(axis, ndim, what="axis"):
    """Caffe2's canonical_axis_index: a negative axis counts from the end."""
    enforce(-ndim <= axis < ndim, "%s=%d is out of range for a %d-D input" % (what, axis, ndim))
    return axis + ndim if axis < 0 else axis


def shape_product(dims):
    return math.prod(int(d) for d in dims)


def check_order(order):
    enforce(order in ("NCHW", "NHWC"), "order=%r: Caffe2 storage order must be NCHW or NHWC" % (order,))


def channels_first(X, order):
    """An NHWC (channels-last) tensor viewed as NCHW; NCHW input is returned as is."""
    if order == "NCHW":
        return X
    return X.permute(0, X.dim() - 1, *range(1, X.dim() - 1))


def restore_order(Y, order):
    """Inverse of `channels_first`: an NCHW result viewed back in `order`."""
    if order == "NCHW":
        return Y
    return Y.permute(0, *range(2, Y.dim()), 1)


def channel_axis(ndim, order):
    return 1 if order == "NCHW" else ndim - 1


def with_max_gradient(Y, candidates, reduce_dims=()):
    """Y (the max, computed without autograd) carrying Caffe2's max gradient.

    Caffe2's MaxPool, Max and ReduceMax gradients give dY in full to *every* input equal to
    the max (ties included); torch gives it to one input (pooling) or splits it (amax).
    `candidates` are the tensors whose elements may be the max: broadcastable to Y, or, with
    `reduce_dims`, tensors that those dims of Y (kept as size 1) were reduced over. The result
    equals Y exactly; its gradient reaches each candidate element that equals its Y.
    """
    picked = None
    for candidate in candidates:
        if not candidate.requires_grad:
            continue
        term = torch.where(candidate == Y, candidate, 0)
        if reduce_dims:
            term = term.sum(dim=reduce_dims, keepdim=True)
        picked = term if picked is None else picked + term
    if picked is None:
        return Y
    return Y + (picked - picked.detach())
