"""Distances between two batches of vectors (the Toy_Regression tutorial's loss and friends).

Every op flattens each input to N x D (N = the first dimension, 1 for a scalar) and returns one
value per row, shape (N,), as Caffe2's distance_op.cc does.
"""
import torch

from food101.caffe2.errors import enforce
from food101.caffe2.ops.registry import operator


def _rows(X, Y, op):
    enforce(X.shape == Y.shape, "%s: X %s and Y %s must have the same shape",
            op, list(X.shape), list(Y.shape))
    n = X.shape[0] if X.dim() > 0 else 1
    return X.reshape(n, -1), Y.reshape(n, -1)


@operator("SquaredL2Distance")
def squared_l2_distance(X, Y):
    """0.5 * ||X_i - Y_i||^2 per row."""
    x, y = _rows(X, Y, "SquaredL2Distance")
    return 0.5 * (x - y).pow(2).sum(dim=1)


@operator("L1Distance")
def l1_distance(X, Y):
    """||X_i - Y_i||_1 per row."""
    x, y = _rows(X, Y, "L1Distance")
    return (x - y).abs().sum(dim=1)


@operator("DotProduct")
def dot_product(X, Y):
    """<X_i, Y_i> per row."""
    x, y = _rows(X, Y, "DotProduct")
    return (x * y).sum(dim=1)


@operator("DotProductWithPadding")
def dot_product_with_padding(X, Y, *, pad_value=0.0, replicate=0):
    """<X_i, Y_i> per row when the rows differ in length: the shorter row is padded with
    pad_value, or (replicate) tiled as many whole times as it fits in the longer one, which
    is then cut to that length."""
    n = X.shape[0] if X.dim() > 0 else 1
    enforce((Y.shape[0] if Y.dim() > 0 else 1) == n, "DotProductWithPadding: X %s and Y %s "
            "must have the same first dimension", list(X.shape), list(Y.shape))
    x, y = X.reshape(n, -1), Y.reshape(n, -1)
    short, long_ = (x, y) if x.shape[1] <= y.shape[1] else (y, x)
    if replicate:
        times = long_.shape[1] // short.shape[1]
        return (short.repeat(1, times) * long_[:, :times * short.shape[1]]).sum(dim=1)
    return (short * long_[:, :short.shape[1]]).sum(dim=1) \
        + pad_value * long_[:, short.shape[1]:].sum(dim=1)


_COSINE_EPS = 1e-12  # Caffe2's kEps on the squared norms: a zero vector gives 0, not NaN


@operator("CosineSimilarity")
def cosine_similarity(X, Y):
    """<X_i, Y_i> / sqrt(max(||X_i||^2, eps) * max(||Y_i||^2, eps)) per row."""
    x, y = _rows(X, Y, "CosineSimilarity")
    x2 = (x * x).sum(dim=1).clamp_min(_COSINE_EPS)
    y2 = (y * y).sum(dim=1).clamp_min(_COSINE_EPS)
    return (x * y).sum(dim=1) / torch.sqrt(x2 * y2)
