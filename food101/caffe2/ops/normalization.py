"""Normalization: SpatialBN (batch normalization), InstanceNorm and LRN (local response
normalization).

SpatialBN, as Caffe2 runs it:
- is_test=1: Y = (X - mean) / sqrt(var + epsilon) * scale + bias with the given statistics;
- is_test=0: Y uses the batch mean and *biased* batch variance; the op also returns the new
  running statistics, running = momentum * running + (1 - momentum) * batch (the variance
  biased too), and the saved batch mean and 1 / sqrt(batch var + epsilon). Nets name the
  running-stat outputs like the inputs (in place); the executor rebinds them. The running
  statistics carry no gradient.
"""
import torch
import torch.nn.functional as F

from food101.caffe2.errors import enforce
from food101.caffe2.ops.common import channels_first, check_order, restore_order
from food101.caffe2.ops.registry import operator


@operator("SpatialBN", grad_inputs=(0, 1, 2))
def spatial_bn(X, scale, bias, mean, var, batch_mean_sum=None, batch_var_sum=None, *, is_test=0,
               epsilon=1e-5, momentum=0.9, order="NCHW", num_batches=1):
    """Y (is_test=1), or (Y, running_mean, running_var, saved_mean, saved_inv_std).

    With 7 inputs (training over `num_batches` batches, e.g. across devices), the batch
    statistics come from the given sums of X and X^2 over all the batches:
    mean = sum / (num_batches * N * H * W), var = sum_sq / that count - mean^2."""
    check_order(order)
    enforce(X.dim() >= 2, "X must be N x C x ..., got shape %s" % list(X.shape))
    x = channels_first(X, order)
    channels = x.shape[1]
    for name, param in (("scale", scale), ("bias", bias), ("mean", mean), ("var", var)):
        enforce(param.numel() == channels, "%s has %d values; X %s (%s) has %d channels"
                % (name, param.numel(), list(X.shape), order, channels))
    if is_test:
        Y = F.batch_norm(x, mean.reshape(-1), var.reshape(-1), scale.reshape(-1),
                         bias.reshape(-1), False, 0.0, epsilon)
        return restore_order(Y, order)
    multi_batch = batch_mean_sum is not None
    enforce(not multi_batch or batch_var_sum is not None,
            "SpatialBN takes 5 or 7 inputs; the 6th (batch_mean_sum) needs the 7th (batch_var_sum)")
    if x.shape[0] == 0:
        # Caffe2: an empty batch leaves the running statistics alone and saves zeros
        zeros = torch.zeros(channels, dtype=X.dtype, device=X.device)
        return X.clone(), mean.clone(), var.clone(), zeros, zeros.clone()
    if multi_batch:
        count = num_batches * (x.numel() // channels)
        with torch.no_grad():
            batch_mean = batch_mean_sum.reshape(-1) / count
            batch_var = batch_var_sum.reshape(-1) / count - batch_mean * batch_mean
    else:
        with torch.no_grad():
            dims = [0] + list(range(2, x.dim()))
            batch_var, batch_mean = torch.var_mean(x.float(), dim=dims, unbiased=False)
    with torch.no_grad():
        running_mean = mean * momentum + batch_mean.reshape(mean.shape).to(mean.dtype) * (1 - momentum)
        running_var = var * momentum + batch_var.reshape(var.shape).to(var.dtype) * (1 - momentum)
        saved_inv_std = torch.rsqrt(batch_var + epsilon)
    if multi_batch:
        shape = [1, channels] + [1] * (x.dim() - 2)
        Y = ((x - batch_mean.reshape(shape)) * saved_inv_std.reshape(shape)
             * scale.reshape(shape) + bias.reshape(shape))
    else:
        Y = F.batch_norm(x, None, None, scale.reshape(-1), bias.reshape(-1), True, 0.0, epsilon)
    return restore_order(Y, order), running_mean, running_var, batch_mean, saved_inv_std


@operator("CaffeBatchNormStats", grad_inputs=())
def caffe_batch_norm_stats(X, mean, var, factor, *, moving_average_fraction=0.999, order="NCHW"):
    """(mean, var, factor): Caffe's BatchNorm running statistics after one TRAIN-phase batch.

    Not a Caffe2 op: the project's, for training nets translated from Caffe, where it runs
    before a training SpatialBN with momentum 1 (which then leaves the statistics alone).
    Caffe keeps mean_acc, var_acc and the scale factor s, updated per batch as
        s = maf * s + 1,  mean_acc = maf * mean_acc + batch_mean,
        var_acc = maf * var_acc + m / (m - 1) * batch_var   (biased batch var; m = N*H*W > 1),
    and normalises at test time with mean_acc / s and var_acc / s. Here `mean`/`var` are those
    quotients (what a test-mode SpatialBN reads) and `factor` is s, so the accumulators are
    mean * s and var * s (float64 in between: Caffe's values to float rounding)."""
    check_order(order)
    x = channels_first(X, order)
    channels = x.shape[1]
    enforce(mean.numel() == channels and var.numel() == channels and factor.numel() == 1,
            "CaffeBatchNormStats: mean/var need %d values (the channels of X %s) and factor 1, "
            "got %d, %d and %d" % (channels, list(X.shape), mean.numel(), var.numel(), factor.numel()))
    m = x.numel() // channels
    maf = float(moving_average_fraction)
    with torch.no_grad():
        dims = [0] + list(range(2, x.dim()))
        batch_var, batch_mean = torch.var_mean(x.float(), dim=dims, unbiased=False)
        s = factor.double().reshape(())
        new_s = maf * s + 1
        correction = m / (m - 1) if m > 1 else 1.0
        new_mean = (maf * s * mean.double().reshape(-1) + batch_mean.double()) / new_s
        new_var = (maf * s * var.double().reshape(-1) + correction * batch_var.double()) / new_s
    return (new_mean.to(mean.dtype).reshape(mean.shape), new_var.to(var.dtype).reshape(var.shape),
            new_s.to(factor.dtype).reshape(factor.shape))


@operator("InstanceNorm", grad_inputs=(0, 1, 2))
def instance_norm(X, scale, bias, *, epsilon=1e-5, order="NCHW"):
    """(Y, mean, inv_stdev): each (image, channel) plane normalized by its own mean and biased
    variance, then scale * . + bias per channel; mean and inv_stdev are N x C."""
    check_order(order)
    enforce(X.dim() >= 3, "InstanceNorm: X must be N x C x ..., got shape %s" % list(X.shape))
    x = channels_first(X, order)
    channels = x.shape[1]
    for name, param in (("scale", scale), ("bias", bias)):
        enforce(param.numel() == channels, "InstanceNorm: %s has %d values; X %s (%s) has %d "
                "channels" % (name, param.numel(), list(X.shape), order, channels))
    flat = x.reshape(x.shape[0], channels, -1)
    var, mean = torch.var_mean(flat, dim=2, unbiased=False)
    inv_std = torch.rsqrt(var + epsilon)
    y = (flat - mean.unsqueeze(2)) * inv_std.unsqueeze(2)
    y = y * scale.reshape(1, -1, 1) + bias.reshape(1, -1, 1)
    return restore_order(y.reshape(x.shape), order), mean, inv_std


@operator("LRN")
def lrn(X, *, size=0, alpha=0.0, beta=0.0, bias=1.0, order="NCHW"):
    """(Y, scale): scale = bias + alpha / size * (sum of X^2 over `size` neighbouring channels,
    (size - 1) // 2 before), Y = X * scale^-beta (Caffe2's and Caffe's across-channel LRN)."""
    check_order(order)
    enforce(size > 0, "LRN needs a positive `size`, got %r" % (size,))
    enforce(X.dim() == 4, "LRN needs a 4-D X, got shape %s" % list(X.shape))
    x = channels_first(X, order)
    before = (size - 1) // 2
    squares = F.pad((x * x).unsqueeze(1), (0, 0, 0, 0, before, size - 1 - before))
    window_mean = F.avg_pool3d(squares, (size, 1, 1), stride=1).squeeze(1)
    scale = bias + alpha * window_mean
    Y = x * scale.pow(-beta)
    return restore_order(Y, order), restore_order(scale, order)
