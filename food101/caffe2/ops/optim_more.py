"""More of Caffe2's optimizer update ops: Ftrl / SparseFtrl, GFtrl, RmsProp, Adadelta, Wngrad,
and Lars (the per-param learning-rate rescale of LARS) (semantics of the torch 1.4.0 C++
kernels; learning rates arrive negative from build_lr, except Ftrl's `alpha` argument)."""
import math

import torch

from food101.caffe2.errors import enforce
from food101.caffe2.ops.optim import _same_size, _scalar
from food101.caffe2.ops.registry import operator


def _ftrl_step(w, n, z, g, alpha, beta, lambda1, lambda2):
    new_n = n + g * g
    sigma = (new_n.sqrt() - n.sqrt()) / alpha
    new_z = z + g - sigma * w
    new_w = torch.where(new_z.abs() <= lambda1, torch.zeros_like(w),
                        (torch.sign(new_z) * lambda1 - new_z)
                        / ((beta + new_n.sqrt()) / alpha + lambda2))
    return new_w, new_n, new_z


@operator("Ftrl", grad_inputs=(), aliases=("Ftrl_ENGINE_SIMD",))
def ftrl(param, nz, grad, alpha_blob=None, *, alpha=0.005, beta=1.0, lambda1=0.001,
         lambda2=0.001):
    """-> (param, nz); nz holds n and z in its last dim (param.shape + [2])."""
    _same_size(grad, param, "grad", "param", "Ftrl")
    enforce(nz.numel() == 2 * param.numel(), "Ftrl: nz must hold 2 values per param element "
            "(%d), has %d", 2 * param.numel(), nz.numel())
    if alpha_blob is not None:
        alpha = _scalar(alpha_blob, "alpha", "Ftrl")
    pairs = nz.reshape(-1, 2)
    w, n, z = _ftrl_step(param.reshape(-1), pairs[:, 0], pairs[:, 1], grad.reshape(-1), alpha,
                         beta, lambda1, lambda2)
    return w.reshape(param.shape), torch.stack([n, z], dim=1).reshape(nz.shape)


@operator("SparseFtrl", grad_inputs=(), aliases=("SparseFtrl_ENGINE_SIMD",))
def sparse_ftrl(param, nz, indices, grad, alpha_blob=None, *, alpha=0.005, beta=1.0,
                lambda1=0.001, lambda2=0.001):
    """Ftrl on the rows of param named by `indices` (grad holds those rows)."""
    if alpha_blob is not None:
        alpha = _scalar(alpha_blob, "alpha", "SparseFtrl")
    rows = indices.reshape(-1).long()
    w2 = param.reshape(param.shape[0], -1).clone()
    nz2 = nz.reshape(param.shape[0], -1, 2).clone()
    g = grad.reshape(rows.numel(), -1)
    for i, row in enumerate(rows.tolist()):  # rows may repeat: updated one after the other
        w, n, z = _ftrl_step(w2[row], nz2[row, :, 0], nz2[row, :, 1], g[i], alpha, beta,
                             lambda1, lambda2)
        w2[row], nz2[row, :, 0], nz2[row, :, 1] = w, n, z
    return w2.reshape(param.shape), nz2.reshape(nz.shape)


@operator("GFtrl", grad_inputs=())
def gftrl(param, nz, grad, alpha_blob=None, *, alpha=0.005, beta=1.0, lambda1=0.001,
          lambda2=0.001):
    """Group-lasso FTRL -> (param, nz). Rows of param (dim 0) are the output nodes, the rest one
    input feature each; a feature's column across the rows is one group: it is zero unless the
    norm of its new z exceeds lambda1 * sqrt(rows), else w = z (lambda1 sqrt(rows) / |z| - 1)
    / ((beta + sqrt(n')) / alpha + lambda2)."""
    _same_size(grad, param, "grad", "param", "GFtrl")
    enforce(nz.numel() == 2 * param.numel(), "GFtrl: nz must hold 2 values per param element "
            "(%d), has %d", 2 * param.numel(), nz.numel())
    if alpha_blob is not None:
        alpha = _scalar(alpha_blob, "alpha", "GFtrl")
    rows = grad.shape[0] if grad.dim() > 0 else 1
    w = param.reshape(rows, -1)
    g = grad.reshape(rows, -1)
    pairs = nz.reshape(rows, -1, 2)
    n, z = pairs[..., 0], pairs[..., 1]
    new_n = n + g * g
    new_z = z + g - (new_n.sqrt() - n.sqrt()) / alpha * w
    z_norm = new_z.norm(dim=0, keepdim=True)
    threshold = lambda1 * math.sqrt(rows)
    shrunk = new_z * (threshold / z_norm.clamp_min(torch.finfo(z_norm.dtype).tiny) - 1) \
        / ((beta + new_n.sqrt()) / alpha + lambda2)
    new_w = torch.where(z_norm > threshold, shrunk, torch.zeros_like(shrunk))
    return new_w.reshape(param.shape), torch.stack([new_n, new_z], dim=-1).reshape(nz.shape)


@operator("Lars", grad_inputs=())
def lars(X, dX, wd, trust, lr_max, *, offset=0.5, lr_min=0.02):
    """LARS's rescale of one param's learning rate -> a [1] tensor:
    clamp(trust / (|dX| / |X| + wd + offset), lr_min, lr_max), 1 (then clamped) when |X| = 0."""
    x_norm = X.float().norm()
    ratio = _scalar(trust, "trust", "Lars") / (
        dX.float().norm() / x_norm + _scalar(wd, "wd", "Lars") + offset)
    val = torch.where(x_norm > 0, ratio, torch.ones_like(ratio))
    val = torch.minimum(val, _scalar(lr_max, "lr_max", "Lars")).clamp_min(lr_min)
    return val.reshape(1).to(X.dtype)


@operator("RmsProp", grad_inputs=())
def rms_prop(grad, mean_squares, mom, lr, *, decay=0.9, momentum=0.0, epsilon=1e-5):
    """-> (output grad, mean squares, momentum): ms' = ms + (1 - decay)(g^2 - ms);
    mom' = momentum * mom + lr * g / sqrt(eps + ms'); the output grad is mom'."""
    lr = _scalar(lr, "lr", "RmsProp")
    ms = mean_squares + (1.0 - decay) * (grad * grad - mean_squares)
    new_mom = momentum * mom + lr * grad / (epsilon + ms).sqrt()
    return new_mom.clone(), ms, new_mom


@operator("Adadelta", grad_inputs=())
def adadelta(param, moment, moment_delta, grad, lr, *, epsilon=1e-5, decay=0.95):
    lr = _scalar(lr, "lr", "Adadelta")
    new_moment = decay * moment + (1.0 - decay) * grad * grad
    update = (moment_delta + epsilon).sqrt() / (new_moment + epsilon).sqrt() * grad
    new_param = param + lr * update
    new_delta = decay * moment_delta + (1.0 - decay) * update * update
    return new_param, new_moment, new_delta


@operator("Wngrad", grad_inputs=())
def wngrad(param, seq_b, grad, lr, *, epsilon=1e-5):
    """param' = param + lr * g / (b + eps); b' = b + sum(g^2) / (b + eps)."""
    lr = _scalar(lr, "lr", "Wngrad")
    b = seq_b.reshape(())
    new_param = param + lr * grad / (b + epsilon)
    new_b = b + (grad * grad).sum() / (b + epsilon)
    return new_param, new_b.reshape(seq_b.shape)
