"""Parameter updates: WeightedSum (plain SGD), MomentumSGD(Update), Adam, and their sparse
forms (SparseMomentumSGDUpdate, SparseAdam, RowWiseSparseAdam) that update only the rows of
the parameter named by an `indices` blob, with one gradient row per index.

Caffe2 writes these outputs in place (param, momentum, moments); here each op returns the new
tensors and the executor rebinds the blob names, so no input is ever mutated. The learning
rate is a one-element blob (LearningRate's output), read on the device without a host sync.

Sign conventions, exactly as in Caffe2:
    WeightedSum([param, ONE, grad, LR])   param + LR * grad          (LR negative for descent)
    MomentumSGDUpdate                      param - (LR * grad + momentum * m)   (LR positive)
    Adam                                   param + LR * correction * m1 / (sqrt(m2) + eps)
                                           (LR negative, as Caffe2's AdamOptimizer passes it)
No update op has a gradient.
"""
import math

import torch

from food101.caffe2.errors import enforce
from food101.caffe2.ops.registry import operator


def _scalar(blob, name, op):
    is_tensor = isinstance(blob, torch.Tensor)
    enforce(is_tensor and blob.numel() == 1, "%s: %s must hold exactly one value, got %s"
            % (op, name, "shape %s" % list(blob.shape) if is_tensor else type(blob).__name__))
    return blob.reshape(())


def _same_size(a, b, name_a, name_b, op):
    enforce(a.numel() == b.numel(), "%s: %s %s and %s %s must have the same number of elements"
            % (op, name_a, list(a.shape), name_b, list(b.shape)))


@operator("WeightedSum", grad_inputs=())
def weighted_sum(*inputs):
    """X0 * w0 + X1 * w1 + ...: inputs alternate tensors and one-element weights."""
    enforce(len(inputs) >= 2 and len(inputs) % 2 == 0,
            "WeightedSum: inputs must be pairs (X0, w0, X1, w1, ...), got %d" % len(inputs))
    X0 = inputs[0]
    total = X0 * _scalar(inputs[1], "weight 0", "WeightedSum")
    for i in range(2, len(inputs), 2):
        X = inputs[i]
        enforce(X.shape == X0.shape, "WeightedSum: X%d has shape %s, X0 has %s"
                % (i // 2, list(X.shape), list(X0.shape)))
        weight = _scalar(inputs[i + 1], "weight %d" % (i // 2), "WeightedSum")
        total = torch.addcmul(total, X, weight)
    return total.to(X0.dtype)


def _momentum_step(grad, momentum_blob, lr, momentum, nesterov, op):
    _same_size(grad, momentum_blob, "grad", "momentum", op)
    lr = _scalar(lr, "lr", op)
    if not nesterov:
        update = lr * grad + momentum * momentum_blob
        return update, update
    new_momentum = momentum * momentum_blob + lr * grad
    update = (1 + momentum) * new_momentum - momentum * momentum_blob
    return update, new_momentum


@operator("MomentumSGDUpdate", grad_inputs=())
def momentum_sgd_update(grad, momentum_blob, lr, param, *, momentum=0.0, nesterov=0):
    """-> (grad_out, momentum, param). Plain: m' = lr * g + mu * m, step = m'.
    Nesterov: m' = mu * m + lr * g, step = (1 + mu) * m' - mu * m. param' = param - step."""
    _same_size(grad, param, "grad", "param", "MomentumSGDUpdate")
    update, new_momentum = _momentum_step(grad, momentum_blob, lr, momentum, nesterov,
                                          "MomentumSGDUpdate")
    return update, new_momentum, param - update.reshape(param.shape)


def _rows(blob, indices, grad, name, op):
    """(blob viewed as rows of the gradient's block size, int64 row indices). Caffe2 takes the
    block size as grad.numel() / indices.numel()."""
    idx = indices.reshape(-1).long()
    enforce(not indices.is_floating_point(), "%s: indices must be integers, got %s"
            % (op, str(indices.dtype).replace("torch.", "")))
    n = idx.numel()
    block = grad.numel() // n if n else (blob.numel() // blob.shape[0] if blob.dim() and blob.shape[0] else 1)
    enforce(n == 0 or grad.numel() == n * block, "%s: grad %s does not split into %d rows"
            % (op, list(grad.shape), n))
    enforce(block == 0 or blob.numel() % block == 0, "%s: %s %s is not made of rows of %d values "
            "(grad %s, %d indices)" % (op, name, list(blob.shape), block, list(grad.shape), n))
    rows = blob.reshape(-1, block) if block else blob.reshape(blob.shape[0] if blob.dim() else 1, 0)
    if n and _host_check_allowed(idx):
        low, high = int(idx.min()), int(idx.max())
        enforce(low >= 0 and high < rows.shape[0], "%s: indices from %d to %d are out of range "
                "for %s with %d rows" % (op, low, high, name, rows.shape[0]))
    return rows, idx


def _host_check_allowed(tensor):
    return not torch.compiler.is_compiling() and not (
        tensor.is_cuda and torch.cuda.is_current_stream_capturing())


def _scatter_rows(blob, rows, idx, new_rows):
    return rows.index_copy(0, idx, new_rows.to(rows.dtype)).reshape(blob.shape)


@operator("MomentumSGD", grad_inputs=())
def momentum_sgd(grad, momentum_blob, lr, *, momentum=0.0, nesterov=0):
    """MomentumSGDUpdate without the param: -> (grad_out, momentum)."""
    return _momentum_step(grad, momentum_blob, lr, momentum, nesterov, "MomentumSGD")


@operator("Adam", grad_inputs=())
def adam(param, moment_1, moment_2, grad, lr, ITER, *, beta1=0.9, beta2=0.999, epsilon=1e-5):
    """-> (param, moment_1, moment_2, effective_grad). With t = ITER + 1:
    m1' = b1 m1 + (1 - b1) g,  m2' = b2 m2 + (1 - b2) g^2,
    param' = param + lr * sqrt(1 - b2^t) / (1 - b1^t) * m1' / (sqrt(m2') + eps)."""
    for blob, name in ((moment_1, "moment_1"), (moment_2, "moment_2"), (param, "param")):
        _same_size(grad, blob, "grad", name, "Adam")
    enforce(isinstance(ITER, torch.Tensor) and ITER.numel() == 1 and not ITER.is_floating_point(),
            "Adam: input 5 must be the int64 iteration counter")
    t = int(ITER.reshape(-1)[0]) + 1
    correction = math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
    new_m1 = moment_1 * beta1 + grad * (1 - beta1)
    new_m2 = moment_2 * beta2 + grad * grad * (1 - beta2)
    step = correction * new_m1 / (new_m2.sqrt() + epsilon)
    new_param = param + _scalar(lr, "lr", "Adam") * step.reshape(param.shape)
    return new_param, new_m1, new_m2, step


def _adam_correction(ITER, beta1, beta2, op):
    enforce(isinstance(ITER, torch.Tensor) and ITER.numel() == 1 and not ITER.is_floating_point(),
            "%s: input 6 must be the int64 iteration counter" % op)
    t = int(ITER.reshape(-1)[0]) + 1
    return math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)


@operator("RowWiseSparseAdam", grad_inputs=())
def row_wise_sparse_adam(param, moment_1, moment_2, indices, grad, lr, ITER, *, beta1=0.9,
                         beta2=0.999, epsilon=1e-5):
    """SparseAdam with one second moment per row (moment_2 is 1-D, one value per param row):
    m2[i]' = b2 m2[i] + (1 - b2) mean(g_i^2) -> (param, moment_1, moment_2, effective_grad)."""
    op = "RowWiseSparseAdam"
    p_rows, idx = _rows(param, indices, grad, "param", op)
    m1_rows, _ = _rows(moment_1, indices, grad, "moment_1", op)
    enforce(moment_2.dim() == 1 and moment_2.shape[0] == p_rows.shape[0],
            "%s: moment_2 must be 1-D with one value per param row (%d), got %s"
            % (op, p_rows.shape[0], list(moment_2.shape)))
    correction = _adam_correction(ITER, beta1, beta2, op)
    g = grad.reshape(-1, p_rows.shape[1])
    new_m1 = m1_rows[idx] * beta1 + g * (1 - beta1)
    mean_sq = (g * g).mean(dim=1) if g.shape[1] else torch.zeros_like(g[:, 0])
    new_m2 = moment_2[idx] * beta2 + mean_sq * (1 - beta2)
    step = correction * new_m1 / (new_m2.sqrt()[:, None] + epsilon)
    new_p = p_rows[idx] + _scalar(lr, "lr", op) * step
    return (_scatter_rows(param, p_rows, idx, new_p), _scatter_rows(moment_1, m1_rows, idx, new_m1),
            moment_2.index_copy(0, idx, new_m2.to(moment_2.dtype)), step.reshape(grad.shape))


@operator("Adagrad", grad_inputs=(), context=True)
def adagrad(param, moment, grad, lr, *, epsilon=1e-5, decay=1.0, ctx):
    """-> (param, moment[, effective_lr[, update]]): moment' = decay * moment + g^2;
    param' = param + lr * g / (sqrt(moment') + eps) (lr negative, as build_adagrad passes it).
    Asked for more outputs, as Caffe2's kernel: effective_lr = lr / (sqrt(moment') + eps),
    update = g * effective_lr, param' = param + update."""
    _same_size(grad, moment, "grad", "moment", "Adagrad")
    _same_size(grad, param, "grad", "param", "Adagrad")
    lr = _scalar(lr, "lr", "Adagrad")
    new_moment = moment * decay + grad * grad
    if ctx.num_outputs <= 2:
        step = grad / (new_moment.sqrt() + epsilon)
        return param + lr * step.reshape(param.shape), new_moment
    effective_lr = lr / (new_moment.sqrt() + epsilon)
    update = grad * effective_lr
    return param + update.reshape(param.shape), new_moment, effective_lr, update
