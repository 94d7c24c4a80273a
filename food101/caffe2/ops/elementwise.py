"""Elementwise math: Add/Sub/Mul/Div with Caffe2 broadcasting, Sum/Mean/Max/Min over several
inputs, Pow, Exp, Log, Sqr, Sqrt, Abs, Negative, Clip, Scale.

Binary ops broadcast two ways, as Caffe2 1.x does:
- `broadcast=1` (legacy): B's shape must match a run of A's dims starting at `axis`
  (`axis=-1`: B's dims are A's trailing ones; `axis_str="C"` with `order` names the axis);
  size-1 dims of B broadcast; a one-element B is a scalar whatever its dims. The result has
  A's shape.
- otherwise: numpy broadcasting.
Integer Div truncates toward zero (C++). Max/Min give the gradient to every input that
equals the result (Caffe2's MaxGradient), not split between ties as torch.maximum does.
"""
import torch

from food101.caffe2.errors import enforce
from food101.caffe2.ops.common import with_max_gradient
from food101.caffe2.ops.registry import operator


def _operands(A, B, broadcast, axis, axis_str, order):
    """(A, B) ready for torch broadcasting under Caffe2's rules."""
    if not broadcast:
        try:
            torch.broadcast_shapes(A.shape, B.shape)
        except RuntimeError:
            enforce(False, "shapes A %s and B %s do not broadcast (numpy rules; set broadcast=1 "
                    "with axis for Caffe2's legacy broadcast)" % (list(A.shape), list(B.shape)))
        return A, B
    if B.numel() == 1:
        # Caffe2 takes a one-element B as a scalar before any dims/axis check (a [1] learning
        # rate times a 0-d multiplier): the result keeps A's shape
        return A, B.reshape(())
    enforce(B.dim() <= A.dim(), "broadcast=1: B %s may not have more dims than A %s"
            % (list(B.shape), list(A.shape)))
    if axis_str:
        enforce(len(axis_str) == 1 and axis_str in order, "axis_str=%r must be one letter of "
                "order=%r" % (axis_str, order))
        axis = order.index(axis_str)
    if axis == -1:
        axis = A.dim() - B.dim()
    enforce(0 <= axis <= A.dim() - B.dim(), "broadcast=1: axis=%d is out of range for A %s and "
            "B %s (valid 0..%d)" % (axis, list(A.shape), list(B.shape), A.dim() - B.dim()))
    for i, size in enumerate(B.shape):
        enforce(size == 1 or size == A.shape[axis + i],
                "broadcast=1, axis=%d: B %s does not match A %s at A's dim %d"
                % (axis, list(B.shape), list(A.shape), axis + i))
    trailing = A.dim() - axis - B.dim()
    return A, B.reshape((1,) * axis + tuple(B.shape) + (1,) * trailing)


@operator("Add")
def add(A, B, *, broadcast=0, axis=-1, axis_str="", order="NCHW"):
    A, B = _operands(A, B, broadcast, axis, axis_str, order)
    return A + B


@operator("Sub")
def sub(A, B, *, broadcast=0, axis=-1, axis_str="", order="NCHW"):
    A, B = _operands(A, B, broadcast, axis, axis_str, order)
    return A - B


@operator("Mul")
def mul(A, B, *, broadcast=0, axis=-1, axis_str="", order="NCHW"):
    A, B = _operands(A, B, broadcast, axis, axis_str, order)
    return A * B


@operator("Div")
def div(A, B, *, broadcast=0, axis=-1, axis_str="", order="NCHW"):
    A, B = _operands(A, B, broadcast, axis, axis_str, order)
    if not A.is_floating_point() and not B.is_floating_point():
        return torch.div(A, B, rounding_mode="trunc")
    return A / B


def _same_shapes(inputs, op):
    enforce(len(inputs) > 0, "%s needs at least one input" % op)
    shape = inputs[0].shape
    for i, X in enumerate(inputs[1:], 1):
        enforce(X.shape == shape, "%s: input %d has shape %s, input 0 has %s; all inputs must "
                "have the same shape" % (op, i, list(X.shape), list(shape)))


@operator("Sum")
def sum_(*inputs):
    """The elementwise sum of all inputs (same shapes)."""
    _same_shapes(inputs, "Sum")
    Y = inputs[0]
    for X in inputs[1:]:
        Y = Y + X
    return Y


@operator("Mean")
def mean(*inputs):
    _same_shapes(inputs, "Mean")
    return sum_(*inputs) / len(inputs)


@operator("Max")
def max_(*inputs):
    _same_shapes(inputs, "Max")
    with torch.no_grad():
        Y = inputs[0]
        for X in inputs[1:]:
            Y = torch.maximum(Y, X)
    return with_max_gradient(Y, inputs)


@operator("Min")
def min_(*inputs):
    _same_shapes(inputs, "Min")
    with torch.no_grad():
        Y = inputs[0]
        for X in inputs[1:]:
            Y = torch.minimum(Y, X)
    return with_max_gradient(Y, inputs)


@operator("Pow")
def pow_(X, exponent_blob=None, *, exponent=None, broadcast=0, axis=-1, axis_str="", order="NCHW"):
    """X ** exponent: the `exponent` argument, or elementwise from a second input."""
    enforce((exponent is None) != (exponent_blob is None),
            "Pow takes the exponent either as the argument `exponent` or as a second input, "
            "exactly one of them")
    if exponent_blob is None:
        return torch.pow(X, exponent)
    X, E = _operands(X, exponent_blob, broadcast, axis, axis_str, order)
    return torch.pow(X, E)


@operator("Exp")
def exp(X):
    return torch.exp(X)


@operator("Log")
def log(X):
    return torch.log(X)


@operator("Sqr")
def sqr(X):
    return X * X


@operator("Sqrt")
def sqrt(X):
    return torch.sqrt(X)


@operator("Abs")
def abs_(X):
    return torch.abs(X)


@operator("Negative")
def negative(X):
    return -X


@operator("Clip")
def clip(X, *, min=None, max=None):
    """X limited to [min, max]; the gradient passes only strictly inside (Caffe2's ClipGradient)."""
    if min is None and max is None:  # Caffe2's default bounds are the dtype's lowest/max
        return X.clone()
    Y = torch.clamp(X, min=min, max=max)
    if not X.requires_grad:
        return Y
    inside = torch.ones_like(X, dtype=torch.bool)
    if min is not None:
        inside &= X > min
    if max is not None:
        inside &= X < max
    return torch.where(inside, X, Y.detach())


@operator("Scale")
def scale(X, *, scale=1.0):
    return X * scale
