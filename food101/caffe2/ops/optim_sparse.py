"""Caffe2's sparse parameter updates: the rows of a param named by `indices` get the update of
their gradient rows (`grad` holds one row per index), as an optimizer does with a GradientSlice.

ScatterWeightedSum, SparseMomentumSGDUpdate, SparseAdagrad, RowWiseSparseAdagrad, SparseAdam
(with RAdam), SparseAdadelta, SparseWngrad: semantics of the torch 1.4.0 C++ kernels, which
walk the indices in order and update in place, so a repeated index is updated again from its
already-updated state. Here the indices are applied in rounds (the k-th occurrence of every
index in round k): each round touches distinct rows, which gives the same result vectorized.
"""
import math

import torch

from food101.caffe2.errors import enforce
from food101.caffe2.ops.optim import _scalar
from food101.caffe2.ops.registry import operator


def _sqrt(x):
    """The correctly rounded square root of the C++ kernels: torch's vectorized float32 sqrt
    on CPU may be 1 ulp off, which long runs of these updates amplify."""
    if x.device.type == "cpu" and x.dtype == torch.float32:
        return x.double().sqrt().float()
    return x.sqrt()


def _rounds(indices, rows, op):
    """[(positions in `indices`, their rows)], each with distinct rows, in update order."""
    flat = indices.reshape(-1).long()
    if flat.numel():
        enforce(int(flat.min()) >= 0 and int(flat.max()) < rows, "%s: index out of range "
                "[0, %d): %s", op, rows, flat.tolist())
    seen = {}
    rounds = []
    for position, row in enumerate(flat.tolist()):
        k = seen.get(row, 0)
        seen[row] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(position)
    return [(torch.tensor(p, dtype=torch.long, device=indices.device),
             flat[p] if len(p) < flat.numel() else flat) for p in rounds]


def _grad_rows(grad, count, param, op):
    """grad as [count, row size of param]."""
    row = param[0].numel() if param.dim() > 0 else 1
    enforce(grad.numel() == count * row, "%s: grad %s must hold %d rows of %d values (the rows "
            "of param %s named by indices)", op, list(grad.shape), count, row, list(param.shape))
    return grad.reshape(count, row)


@operator("ScatterWeightedSum", grad_inputs=())
def scatter_weighted_sum(X0, w0, indices, *slices):
    """X0[indices] = w0 * X0[indices] + w1 * X1 + w2 * X2 + ... (X1, w1, ... follow indices;
    each X_i holds one slice of X0 per index). A repeated index is scaled by w0 each time."""
    enforce(len(slices) >= 2 and len(slices) % 2 == 0, "ScatterWeightedSum: inputs must be X0, "
            "w0, INDICES, then pairs X1, w1, ..., got %d inputs", 3 + len(slices))
    w0 = _scalar(w0, "weight 0", "ScatterWeightedSum")
    rows = X0.reshape(X0.shape[0], -1).clone()
    count = indices.numel()
    parts = [(_grad_rows(slices[i], count, X0, "ScatterWeightedSum"),
              _scalar(slices[i + 1], "weight %d" % (i // 2 + 1), "ScatterWeightedSum"))
             for i in range(0, len(slices), 2)]
    flat = indices.reshape(-1).long()
    _rounds(indices, X0.shape[0], "ScatterWeightedSum")  # the range check
    # Caffe2 scales a row by w0 once per occurrence of its index, then adds every X_i slice
    occurrences = torch.bincount(flat, minlength=X0.shape[0]).to(rows.dtype)
    rows = rows * (w0 ** occurrences).unsqueeze(1)
    for X, w in parts:
        rows = rows.index_add(0, flat, (X * w).to(rows.dtype))
    return rows.reshape(X0.shape)


@operator("SparseMomentumSGDUpdate", grad_inputs=())
def sparse_momentum_sgd_update(grad, moment, lr, param, indices, *, momentum=0.0, nesterov=0):
    """MomentumSGDUpdate on the rows named by indices -> (grad_out, moment, param); grad_out
    holds each row's step."""
    lr = _scalar(lr, "lr", "SparseMomentumSGDUpdate")
    count = indices.numel()
    g = _grad_rows(grad, count, param, "SparseMomentumSGDUpdate")
    p = param.reshape(param.shape[0], -1).clone()
    m = moment.reshape(param.shape[0], -1).clone()
    out = torch.empty_like(g)
    for positions, index in _rounds(indices, param.shape[0], "SparseMomentumSGDUpdate"):
        gi, mi = g[positions], m[index]
        if nesterov:
            new_m = momentum * mi + lr * gi
            step = (1 + momentum) * new_m - momentum * mi
        else:
            new_m = step = lr * gi + momentum * mi
        m[index] = new_m
        p[index] = p[index] - step
        out[positions] = step
    return out.reshape(grad.shape), m.reshape(moment.shape), p.reshape(param.shape)


@operator("SparseAdagrad", grad_inputs=())
def sparse_adagrad(param, moment, indices, grad, lr, *, epsilon=1e-5):
    """m[i] += g^2; param[i] += lr * g / (sqrt(m[i]) + eps) -> (param, moment)."""
    lr = _scalar(lr, "lr", "SparseAdagrad")
    g = _grad_rows(grad, indices.numel(), param, "SparseAdagrad")
    p = param.reshape(param.shape[0], -1).clone()
    m = moment.reshape(param.shape[0], -1).clone()
    for positions, index in _rounds(indices, param.shape[0], "SparseAdagrad"):
        gi = g[positions]
        mi = m[index] + gi * gi
        m[index] = mi
        p[index] = p[index] + lr * gi / (_sqrt(mi) + epsilon)
    return p.reshape(param.shape), m.reshape(moment.shape)


@operator("RowWiseSparseAdagrad", grad_inputs=())
def row_wise_sparse_adagrad(param, moment, indices, grad, lr, *, epsilon=1e-5):
    """Adagrad with one moment per row: m[i] += mean(g_row^2);
    param[i] += lr * g_row / (sqrt(m[i]) + eps) -> (param, moment)."""
    lr = _scalar(lr, "lr", "RowWiseSparseAdagrad")
    enforce(moment.numel() == param.shape[0], "RowWiseSparseAdagrad: moment must hold one value "
            "per row of param (%d), has %d", param.shape[0], moment.numel())
    g = _grad_rows(grad, indices.numel(), param, "RowWiseSparseAdagrad")
    p = param.reshape(param.shape[0], -1).clone()
    m = moment.reshape(-1).clone()
    for positions, index in _rounds(indices, param.shape[0], "RowWiseSparseAdagrad"):
        gi = g[positions]
        mi = m[index] + (gi * gi).mean(dim=1)
        m[index] = mi
        p[index] = p[index] + lr * gi / (_sqrt(mi) + epsilon).unsqueeze(1)
    return p.reshape(param.shape), m.reshape(moment.shape)


def _radam_factor(t, beta2):
    """RAdam's variance rectification r_t, or None while the variance is intractable
    (rho_t <= 5: the step is then plain bias-corrected momentum)."""
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    beta2_t = beta2 ** t
    rho_t = rho_inf - 2.0 * t * beta2_t / (1.0 - beta2_t)
    if rho_t <= 5.0:
        return None
    return math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                     / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))


@operator("SparseAdam", grad_inputs=())
def sparse_adam(param, moment_1, moment_2, indices, grad, lr, ITER, *, beta1=0.9, beta2=0.999,
                epsilon=1e-5, enableRAdam=False):
    """Adam on the rows named by indices -> (param, moment_1, moment_2[, effective grad]).
    With enableRAdam, the step is rectified by r_t (RAdam) once rho_t > 5, and is
    lr * m1' / (1 - beta1^t) before."""
    lr = _scalar(lr, "lr", "SparseAdam")
    t = int(ITER.reshape(-1)[0]) + 1
    correction = math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
    g = _grad_rows(grad, indices.numel(), param, "SparseAdam")
    p = param.reshape(param.shape[0], -1).clone()
    m1 = moment_1.reshape(param.shape[0], -1).clone()
    m2 = moment_2.reshape(param.shape[0], -1).clone()
    steps = torch.empty_like(g)
    rectify = _radam_factor(t, beta2) if enableRAdam else None
    for positions, index in _rounds(indices, param.shape[0], "SparseAdam"):
        gi = g[positions]
        a = m1[index] * beta1 + gi * (1 - beta1)
        b = m2[index] * beta2 + gi * gi * (1 - beta2)
        m1[index], m2[index] = a, b
        if enableRAdam and rectify is None:
            step = a / (1.0 - beta1 ** t)
        else:
            step = correction * (rectify if rectify is not None else 1.0) * a / (_sqrt(b)
                                                                              + epsilon)
        p[index] = p[index] + lr * step
        steps[positions] = step
    return (p.reshape(param.shape), m1.reshape(moment_1.shape), m2.reshape(moment_2.shape),
            steps.reshape(grad.shape))


@operator("SparseAdadelta", grad_inputs=())
def sparse_adadelta(param, moment, moment_delta, indices, grad, lr, *, epsilon=1e-5,
                    decay=0.95):
    """Adadelta on the rows named by indices -> (param, moment, moment_delta)."""
    lr = _scalar(lr, "lr", "SparseAdadelta")
    g = _grad_rows(grad, indices.numel(), param, "SparseAdadelta")
    p = param.reshape(param.shape[0], -1).clone()
    m = moment.reshape(param.shape[0], -1).clone()
    d = moment_delta.reshape(param.shape[0], -1).clone()
    for positions, index in _rounds(indices, param.shape[0], "SparseAdadelta"):
        gi = g[positions]
        mi = decay * m[index] + (1.0 - decay) * gi * gi
        update = _sqrt(d[index] + epsilon) / _sqrt(mi + epsilon) * gi
        m[index] = mi
        p[index] = p[index] + lr * update
        d[index] = decay * d[index] + (1.0 - decay) * update * update
    return p.reshape(param.shape), m.reshape(moment.shape), d.reshape(moment_delta.shape)


@operator("SparseWngrad", grad_inputs=())
def sparse_wngrad(param, seq_b, indices, grad, lr, *, epsilon=1e-5):
    """param[i] += lr * g / (b + eps) for every index (repeats add up), with the b of before
    the step; then b' = b + sum(g^2) / b -> (param, seq_b)."""
    lr = _scalar(lr, "lr", "SparseWngrad")
    b = seq_b.reshape(())
    g = _grad_rows(grad, indices.numel(), param, "SparseWngrad")
    _rounds(indices, param.shape[0], "SparseWngrad")  # the range check
    p = param.reshape(param.shape[0], -1).index_add(
        0, indices.reshape(-1).long(), (lr / (b + epsilon) * g).to(param.dtype))
    new_b = b + (g * g).sum() / b  # no epsilon here in Caffe2's sparse kernel
    return p.reshape(param.shape), new_b.reshape(seq_b.shape)
