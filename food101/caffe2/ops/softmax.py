"""Softmax and SoftmaxWithLoss.

Caffe2 takes the softmax of X read as a matrix: the dims before `axis` are the rows and all
dims from `axis` on are one row of classes. So an N x C x 1 x 1 blob (the Model Zoo's
`softmaxout`) is a softmax over C, and an N x C x H x W blob one over C*H*W.
"""
import torch

from food101.caffe2.errors import enforce
from food101.caffe2.ops.common import canonical_axis, shape_product
from food101.caffe2.ops.loss import LOG_THRESHOLD, class_labels
from food101.caffe2.ops.registry import operator


def _as_rows(X, axis):
    axis = canonical_axis(axis, X.dim())
    return X.reshape(shape_product(X.shape[:axis]), shape_product(X.shape[axis:]))


@operator("Softmax")
def softmax(X, *, axis=1):
    return torch.softmax(_as_rows(X, axis), dim=1).reshape(X.shape)


def _floored_log_softmax(x, dim):
    """(P, log P floored at 1e-20): the value is Caffe2's log(max(P, 1e-20)); the gradient is
    log_softmax's, i.e. P - onehot for the picked class, as Caffe2's SoftmaxWithLossGradient."""
    P = torch.softmax(x, dim=dim)
    log_p = torch.log_softmax(x, dim=dim)
    floored = torch.log(P.detach().clamp_min(LOG_THRESHOLD))
    return P, log_p + (floored - log_p).detach()


@operator("SoftmaxWithLoss", grad_inputs=(0,), context=True)
def softmax_with_loss(X, label, weights=None, *, scale=1.0, label_prob=0, spatial=0, axis=1,
                      order="NCHW", ctx):
    """(P, loss): P = Softmax(X); loss = scale * sum_i w_i * -log(max(P[i, label_i], 1e-20))
    / sum_i w_i (w = 1 without weights; 0 when the weights sum to 0), a scalar.

    label_prob=1: label is N x D probabilities, loss_i = -sum_j label_ij log P_ij.
    spatial=1: X is N x D x H x W (NCHW), label N x H x W, pixels labelled -1 are ignored."""
    if spatial:
        return _spatial_softmax_with_loss(X, label, weights, scale, order, ctx)
    x = _as_rows(X, axis)
    rows, classes = x.shape
    P, log_p = _floored_log_softmax(x, 1)
    if label_prob:
        enforce(label.is_floating_point() and label.numel() == rows * classes,
                "label_prob=1: label blob %r must hold N x D = %d x %d probabilities, got %s %s"
                % (ctx.op.input[1], rows, classes, str(label.dtype).replace("torch.", ""),
                   list(label.shape)))
        losses = -(label.reshape(rows, classes).to(log_p.dtype) * log_p).sum(dim=1)
    else:
        if label.dim() == canonical_axis(axis, X.dim()) and label.shape == X.shape[:label.dim()]:
            label = label.reshape(-1)  # Caffe2 takes labels shaped as X's dims before `axis`
        labels = class_labels(label, rows, classes, ctx)
        losses = -log_p.gather(1, labels[:, None]).squeeze(1)
    loss = _weighted_mean(losses, weights, rows, ctx) * scale
    return P.reshape(X.shape), loss


@operator("SpatialSoftmaxWithLoss", grad_inputs=(0,), context=True)
def spatial_softmax_with_loss(X, label, weights=None, *, scale=1.0, order="NCHW", ctx):
    """SoftmaxWithLoss with spatial=1: (P, loss) for an N x D x H x W X, labels N x H x W,
    pixels labelled -1 ignored."""
    return _spatial_softmax_with_loss(X, label, weights, scale, order, ctx)


def _weighted_mean(losses, weights, count, ctx):
    if weights is None:
        return losses.sum() / count
    enforce(weights.numel() == losses.numel(), "weight blob %r has %d values, one per row (%d) "
            "is needed" % (ctx.op.input[2], weights.numel(), losses.numel()))
    w = weights.reshape(losses.shape).to(losses.dtype).detach()
    total = w.sum()
    return (losses * w).sum() / torch.where(total != 0, total, torch.ones_like(total))


def _spatial_softmax_with_loss(X, label, weights, scale, order, ctx):
    enforce(order == "NCHW" and X.dim() == 4, "spatial=1 needs an NCHW X of 4 dims, got %s %s"
            % (order, list(X.shape)))
    N, D, H, W = X.shape
    P, log_p = _floored_log_softmax(X, 1)
    enforce(label.numel() == N * H * W, "spatial=1: label blob %r has shape %s; N x H x W = %s "
            "is needed" % (ctx.op.input[1], list(label.shape), [N, H, W]))
    labels = class_labels(label.reshape(-1), N * H * W, D, ctx, ignore=-1).reshape(N, H, W)
    valid = labels != -1
    picked = log_p.gather(1, torch.where(valid, labels, 0)[:, None]).squeeze(1)
    w = valid.to(picked.dtype)
    if weights is not None:
        enforce(weights.numel() == N * H * W, "weight blob %r has %d values; N x H x W = %d needed"
                % (ctx.op.input[2], weights.numel(), N * H * W))
        w = w * weights.reshape(N, H, W).to(picked.dtype).detach()
    total = w.sum()
    loss = -(picked * w).sum() / torch.where(total != 0, total, torch.ones_like(total))
    return P, loss * scale
