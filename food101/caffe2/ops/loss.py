"""Losses and the accuracy metric on integer class labels: LabelCrossEntropy, AveragedLoss,
Accuracy (SoftmaxWithLoss is in softmax.py and shares the label checks here).

Caffe2 takes the log of a probability floored at kLOG_THRESHOLD = 1e-20, and its gradient
divides by that floored value (no zero gradient below the floor, as torch.clamp would give).
"""
import torch

from food101.caffe2.errors import enforce
from food101.caffe2.ops.common import shape_product
from food101.caffe2.ops.registry import operator

LOG_THRESHOLD = 1e-20  # Caffe2's kLOG_THRESHOLD()


def _host_sync_allowed(tensor):
    """Reading a value on the host breaks torch.compile graphs and CUDA graph capture."""
    if torch.compiler.is_compiling():
        return False
    return not (tensor.is_cuda and torch.cuda.is_current_stream_capturing())


def class_labels(label, rows, classes, ctx, position=1, ignore=None):
    """`label` (N or N x 1 integer class ids) checked and returned as an int64 vector.

    `ignore` is a label value allowed outside [0, classes) (SoftmaxWithLoss's spatial -1)."""
    name = ctx.op.input[position] if ctx is not None else "label"
    enforce(not label.is_floating_point() and label.dtype != torch.bool,
            "label blob %r must hold integer class ids (int32), got %s values of shape %s"
            % (name, str(label.dtype).replace("torch.", ""), list(label.shape)))
    enforce(label.numel() == rows and (label.dim() == 1 or (label.dim() == 2 and label.shape[1] == 1)),
            "label blob %r has shape %s; it needs one class id per row: [%d] or [%d, 1]"
            % (name, list(label.shape), rows, rows))
    if rows and _host_sync_allowed(label):
        valid = label if ignore is None else label[label != ignore]
        if valid.numel():
            low, high = (int(v) for v in torch.aminmax(valid))
            enforce(0 <= low and high < classes,
                    "label blob %r holds class ids from %d to %d, outside the valid range [0, %d) "
                    "for %d classes" % (name, low, high, classes, classes))
    return label.reshape(rows).long()


def floored_log(p):
    """log(max(p, 1e-20)) whose gradient is 1 / max(p, 1e-20), as Caffe2's."""
    if p.dtype in (torch.float16, torch.bfloat16):
        p = p.float()  # 1e-20 is below the half-precision range
    floored = p + (p.clamp_min(LOG_THRESHOLD) - p).detach()
    return torch.log(floored)


@operator("LabelCrossEntropy", grad_inputs=(0,), context=True)
def label_cross_entropy(X, label, *, ctx):
    """Y[i] = -log(max(X[i, label[i]], 1e-20)); X holds probabilities, N x D (or N x D x 1 x 1)."""
    rows = X.shape[0] if X.dim() > 1 else 1
    classes = shape_product(X.shape[1:]) if X.dim() > 1 else X.shape[0]
    labels = class_labels(label, rows, classes, ctx)
    picked = X.reshape(rows, classes).gather(1, labels[:, None]).squeeze(1)
    return -floored_log(picked)


@operator("AveragedLoss")
def averaged_loss(X):
    """The mean of all elements, a scalar (shape [])."""
    return X.mean()


@operator("Accuracy", grad_inputs=(), context=True)
def accuracy(X, label, *, top_k=1, ctx):
    """The fraction of rows whose label scores among the top_k of X (N x D), as float32 [].

    Ties rank the lower class index first, as Caffe2 does."""
    enforce(X.dim() == 2, "prediction blob %r must be N x D, got shape %s (Flatten an "
            "N x D x 1 x 1 blob first)" % (ctx.op.input[0], list(X.shape)))
    rows, classes = X.shape
    labels = class_labels(label, rows, classes, ctx)
    with torch.no_grad():
        score = X.gather(1, labels[:, None])
        columns = torch.arange(classes, device=X.device)
        ahead = (X > score) | ((X == score) & (columns < labels[:, None]))
        return (ahead.sum(dim=1) < top_k).float().mean()


@operator("MultiClassAccuracy", grad_inputs=())
def multi_class_accuracy(prediction, labels):
    """-> (per class: the fraction of its examples whose arg max is the class (float32), the
    number of its examples (int32))."""
    enforce(prediction.dim() == 2, "MultiClassAccuracy: prediction must be N x D, got %s",
            list(prediction.shape))
    n, d = prediction.shape
    labels = labels.reshape(-1).long()
    enforce(labels.numel() == n, "MultiClassAccuracy: %d labels for %d predictions",
            labels.numel(), n)
    hits = (prediction.argmax(dim=1) == labels).float()
    amounts = torch.bincount(labels, minlength=d)[:d]
    correct = torch.zeros(d, device=prediction.device).index_add_(0, labels, hits)
    accuracies = torch.where(amounts > 0, correct / amounts.clamp_min(1), torch.zeros_like(correct))
    return accuracies, amounts.to(torch.int32)
