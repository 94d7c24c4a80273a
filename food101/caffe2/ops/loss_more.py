"""More of Caffe2's losses: SigmoidCrossEntropyWithLogits (and its weighted form),
CrossEntropy (soft labels) (SpatialSoftmaxWithLoss is in softmax.py)."""
import torch
import torch.nn.functional as F

from food101.caffe2.errors import enforce
from food101.caffe2.ops.registry import operator


@operator("SigmoidCrossEntropyWithLogits", grad_inputs=(0,))
def sigmoid_cross_entropy_with_logits(logits, targets, *, log_D_trick=0, unjoined_lr_loss=0):
    """Mean over the last dim of -(t log s(x) + (1 - t) log(1 - s(x))): one value per row.
    log_D_trick: -(2t - 1) log s(x); unjoined_lr_loss: -t x + (1 - t) log(1 + e^x) (the
    negatives' loss without their logit term), as Caffe2's kernels."""
    enforce(logits.shape == targets.shape, "logits %s and targets %s must have the same shape",
            list(logits.shape), list(targets.shape))
    enforce(not (log_D_trick and unjoined_lr_loss),
            "log_D_trick and unjoined_lr_loss cannot both be set")
    if log_D_trick:
        loss = -(2 * targets - 1) * F.logsigmoid(logits)
    elif unjoined_lr_loss:
        loss = -targets * logits + (1 - targets) * F.softplus(logits)
    else:
        loss = F.softplus(logits) - logits * targets
    return loss.mean(dim=-1) if logits.dim() > 0 else loss


@operator("WeightedSigmoidCrossEntropyWithLogits", grad_inputs=(0,))
def weighted_sigmoid_cross_entropy_with_logits(logits, targets, weights):
    loss = weights * (F.softplus(logits) - logits * targets)
    return loss.mean(dim=-1)


@operator("CrossEntropy", grad_inputs=(0,))
def cross_entropy(X, label):
    """-sum_j label_ij log(max(X_ij, 1e-20)) per row (soft labels)."""
    enforce(X.shape == label.shape, "CrossEntropy: X %s and label %s must have the same shape",
            list(X.shape), list(label.shape))
    return -(label * torch.log(X.clamp_min(1e-20))).sum(dim=-1)
