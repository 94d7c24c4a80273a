"""Caffe2's ConvTranspose (2-D, NCHW or NHWC, adj, asymmetric pads) and LpPool.

ConvTranspose's filter is C_in x C_out/group x kH x kW (NCHW) or C_in x kH x kW x C_out/group
(NHWC); the output size is (H - 1) * stride - pad_t - pad_b + kH + adj_h."""
import torch
import torch.nn.functional as F

from food101.caffe2.errors import enforce
from food101.caffe2.ops.common import channels_first, restore_order
from food101.caffe2.ops.conv_pool_base import NOTSET, pad_widths, resolve_window, window_arguments
from food101.caffe2.ops.registry import operator


def _conv_transpose_arguments(args):
    adj = args.pop("adj", None)
    adj_h, adj_w = args.pop("adj_h", None), args.pop("adj_w", None)
    adjs = args.pop("adjs", None)
    args = window_arguments(args)
    ndim = len(args["kernels"])
    if adjs:
        args["adjs"] = tuple(int(a) for a in adjs)
    elif adj_h is not None or adj_w is not None:
        args["adjs"] = (int(adj_h or 0), int(adj_w or 0))
    else:
        args["adjs"] = (int(adj or 0),) * ndim
    return args


@operator("ConvTranspose", prepare=_conv_transpose_arguments)
def conv_transpose(X, W, b=None, *, kernels=None, strides=None, pads=None, dilations=None,
                   legacy_pad=NOTSET, global_pooling=0, group=1, order="NCHW", adjs=(),
                   kernel=None, kernel_h=None, kernel_w=None, stride=None, stride_h=None,
                   stride_w=None, pad=None, pad_t=None, pad_l=None, pad_b=None, pad_r=None,
                   dilation=None, dilation_h=None, dilation_w=None, adj=None, adj_h=None,
                   adj_w=None, shared_buffer=0, no_bias=0):
    ndim = len(kernels)
    enforce(X.dim() == ndim + 2 and W.dim() == ndim + 2,
            "ConvTranspose: X %s and W %s must be %d-D", list(X.shape), list(W.shape), ndim + 2)
    x, w = channels_first(X, order), channels_first(W, order)
    enforce(w.shape[0] == x.shape[1], "ConvTranspose: W %s has %d input channels, X %s has %d",
            list(W.shape), w.shape[0], list(X.shape), x.shape[1])
    enforce(tuple(w.shape[2:]) == tuple(kernels), "W shape %s does not match the kernel %s",
            list(W.shape), list(kernels))
    enforce(all(a < s for a, s in zip(adjs, strides)), "adj %s must be smaller than the "
            "stride %s", list(adjs), list(strides))
    heads, tails = pads[:ndim], pads[ndim:]
    y = F.conv_transpose2d(x, w, None, stride=strides, padding=0, groups=group,
                           dilation=dilations) if ndim == 2 else \
        F.conv_transpose1d(x, w, None, stride=strides, padding=0, groups=group, dilation=dilations)
    # the output keeps (H - 1) * stride - pads + kernel + adj values from pad_t on: adj takes
    # back part of the tail padding, and what lies past the full result is zero
    full = y.shape[2:]
    outs = [(x.shape[2 + d] - 1) * strides[d] - heads[d] - tails[d]
            + dilations[d] * (kernels[d] - 1) + 1 + adjs[d] for d in range(ndim)]
    overhang = [max(0, heads[d] + outs[d] - full[d]) for d in range(ndim)]
    if any(overhang):
        y = F.pad(y, [p for o in reversed(overhang) for p in (0, o)])
    y = y[(slice(None), slice(None)) + tuple(slice(heads[d], heads[d] + outs[d])
                                             for d in range(ndim))]
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * ndim)
    return restore_order(y, order)


@operator("LpPool", prepare=window_arguments)
def lp_pool(X, *, p=2.0, kernels=None, strides=None, pads=None, dilations=None,
            legacy_pad=NOTSET, global_pooling=0, order="NCHW",
            kernel=None, kernel_h=None, kernel_w=None, stride=None, stride_h=None, stride_w=None,
            pad=None, pad_t=None, pad_l=None, pad_b=None, pad_r=None,
            dilation=None, dilation_h=None, dilation_w=None):
    """(sum over the window of |x|^p)^(1/p); padding counts as zeros."""
    x = channels_first(X, order)
    kernels, heads, tails, _ = resolve_window(tuple(x.shape[2:]), kernels, strides, pads,
                                              dilations, legacy_pad, global_pooling)
    if global_pooling:
        strides = (1,) * len(kernels)
    powered = x.abs().pow(p)
    if any(heads) or any(tails):
        powered = F.pad(powered, pad_widths(heads, tails))
    ones = torch.ones((powered.shape[1], 1) + tuple(kernels), dtype=x.dtype, device=x.device)
    summed = F.conv2d(powered, ones, stride=strides, groups=powered.shape[1])
    return restore_order(summed.pow(1.0 / p), order)
