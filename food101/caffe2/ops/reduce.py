"""Reductions: ReduceSum/Mean/Max/Min over `axes` (default all, `keepdims` default 1) and the
ReduceFront*/ReduceBack* forms over the first / last `num_reduce_dim` dims.

ReduceMax/ReduceMin give the gradient to every element equal to the result, as Caffe2 does.
"""
import torch

from food101.caffe2.errors import enforce
from food101.caffe2.ops.common import canonical_axis, with_max_gradient
from food101.caffe2.ops.registry import operator


def _reduce(X, dims, keepdims, kind):
    if not dims:  # torch would read an empty dim list as "all dims"
        return X
    if kind == "sum":
        Y = X.sum(dim=dims, keepdim=True)
    elif kind == "mean":
        Y = X.mean(dim=dims, keepdim=True)
    else:
        with torch.no_grad():
            Y = X.amax(dim=dims, keepdim=True) if kind == "max" else X.amin(dim=dims, keepdim=True)
        Y = with_max_gradient(Y, [X], reduce_dims=dims)
    return Y if keepdims else Y.squeeze(dims)


def _axes(X, axes):
    if not axes:  # unset or empty: every dim, as in Caffe2
        return tuple(range(X.dim()))
    return tuple(sorted({canonical_axis(a, X.dim(), "axes") for a in axes}))


def _register(kind):
    name = kind.capitalize()

    @operator("Reduce" + name)
    def reduce_axes(X, *, axes=None, keepdims=1):
        return _reduce(X, _axes(X, axes), keepdims, kind)

    @operator("ReduceFront" + name)
    def reduce_front(X, *, num_reduce_dim=1):
        enforce(0 <= num_reduce_dim <= X.dim(), "num_reduce_dim=%d is out of range for X %s"
                % (num_reduce_dim, list(X.shape)))
        return _reduce(X, tuple(range(num_reduce_dim)), False, kind)

    @operator("ReduceBack" + name)
    def reduce_back(X, *, num_reduce_dim=1):
        enforce(0 <= num_reduce_dim <= X.dim(), "num_reduce_dim=%d is out of range for X %s"
                % (num_reduce_dim, list(X.shape)))
        return _reduce(X, tuple(range(X.dim() - num_reduce_dim, X.dim())), False, kind)

    reduce_axes.__doc__ = "%s over `axes` (all by default)." % name
    reduce_front.__doc__ = "%s over the first num_reduce_dim dims." % name
    reduce_back.__doc__ = "%s over the last num_reduce_dim dims." % name


for _kind in ("sum", "mean", "max", "min"):
    _register(_kind)


@operator("SumSqrElements")
def sum_sqr_elements(X, *, average=0):
    """The sum (average=1: the mean) of X's squared elements, a scalar; gradient clipping's norm."""
    squares = X * X
    return squares.mean() if average else squares.sum()
