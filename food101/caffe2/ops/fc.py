"""Fully connected layers: FC (W is N x K) and FCTransposed (W is K x N).

X is read as a matrix M x K by joining its dims before `axis` (rows) and from `axis` on
(columns); W likewise at `axis_w`. Y = X W^T + b has shape X.shape[:axis] + [N].
"""
import torch
import torch.nn.functional as F

from food101.caffe2.errors import enforce
from food101.caffe2.ops.common import canonical_axis, shape_product
from food101.caffe2.ops.registry import operator


def _as_matrix(T, axis, name):
    axis = canonical_axis(axis, T.dim(), "axis" if name == "X" else "axis_w")
    return T.reshape(shape_product(T.shape[:axis]), shape_product(T.shape[axis:])), axis


@operator("FC")
def fc(X, W, b, *, axis=1, axis_w=1):
    """Y = X W^T + b."""
    x, axis = _as_matrix(X, axis, "X")
    w, _ = _as_matrix(W, axis_w, "W")
    enforce(w.shape[1] == x.shape[1], "X %s read at axis %d has K=%d columns, but W %s (N x K at "
            "axis_w %d) has K=%d" % (list(X.shape), axis, x.shape[1], list(W.shape), axis_w,
                                     w.shape[1]))
    enforce(b.numel() == w.shape[0], "b has %d values, but W %s has N=%d outputs"
            % (b.numel(), list(W.shape), w.shape[0]))
    return F.linear(x, w, b.reshape(-1)).reshape(tuple(X.shape[:axis]) + (w.shape[0],))


@operator("FCTransposed")
def fc_transposed(X, W, b, *, axis=1, axis_w=1):
    """Y = X W + b with W stored K x N."""
    x, axis = _as_matrix(X, axis, "X")
    w, _ = _as_matrix(W, axis_w, "W")
    enforce(w.shape[0] == x.shape[1], "X %s read at axis %d has K=%d columns, but W %s (K x N at "
            "axis_w %d) has K=%d" % (list(X.shape), axis, x.shape[1], list(W.shape), axis_w,
                                     w.shape[0]))
    enforce(b.numel() == w.shape[1], "b has %d values, but W %s has N=%d outputs"
            % (b.numel(), list(W.shape), w.shape[1]))
    return torch.addmm(b.reshape(-1), x, w).reshape(tuple(X.shape[:axis]) + (w.shape[1],))
