"""Convolution (Caffe2's Conv, 1-D to 3-D, NCHW or NHWC, grouped, dilated).

The filter is M x C/group x kH x kW in NCHW and M x kH x kW x C/group in NHWC; an NHWC conv
runs as the NCHW one on permuted views (channels_last memory, which torch convolves natively).
Asymmetric or input-dependent padding (pad_t != pad_b, legacy_pad) is applied with F.pad
before a conv without padding.
"""
import torch.nn.functional as F

from food101.caffe2.errors import enforce
from food101.caffe2.ops.common import channels_first, restore_order
from food101.caffe2.ops.conv_pool_base import NOTSET, pad_widths, resolve_window, window_arguments
from food101.caffe2.ops.registry import operator

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


@operator("Conv", prepare=window_arguments, aliases=("Conv1D", "Conv2D", "Conv3D"))
def conv(X, W, b=None, *, kernels=None, strides=None, pads=None, dilations=None,
         legacy_pad=NOTSET, group=1, order="NCHW",
         # the forms below are folded into kernels/strides/pads/dilations by window_arguments
         kernel=None, kernel_h=None, kernel_w=None, stride=None, stride_h=None, stride_w=None,
         pad=None, pad_t=None, pad_l=None, pad_b=None, pad_r=None,
         dilation=None, dilation_h=None, dilation_w=None, global_pooling=0):
    """Y = X * W + b over the spatial dims; Y is N x M x H' x W' (N x H' x W' x M in NHWC)."""
    enforce(not global_pooling, "global_pooling is a pooling argument; Conv needs a kernel")
    ndim = len(kernels)
    # messages are formatted only when a check fails (enforce's lazy args): this is a hot path
    enforce(X.dim() == ndim + 2, "X must be %d-D for a %d-D kernel %s, got shape %s",
            ndim + 2, ndim, list(kernels), list(X.shape))
    enforce(W.dim() == ndim + 2, "W must be %d-D (%s), got shape %s", ndim + 2,
            "M x C/group x kernel" if order == "NCHW" else "M x kernel x C/group", list(W.shape))
    x, w = channels_first(X, order), channels_first(W, order)
    channels, filters = x.shape[1], w.shape[0]
    enforce(channels % group == 0 and filters % group == 0,
            "group=%d must divide the input channels (%d, X shape %s) and the filters "
            "(%d, W shape %s)", group, channels, list(X.shape), filters, list(W.shape))
    enforce(w.shape[1] * group == channels,
            "channel mismatch: X shape %s (%s) has %d channels, but W shape %s expects %d "
            "(C/group = %d, group = %d)", list(X.shape), order, channels, list(W.shape),
            w.shape[1] * group, w.shape[1], group)
    enforce(tuple(w.shape[2:]) == tuple(kernels), "W shape %s does not match the kernel %s",
            list(W.shape), list(kernels))
    if b is not None:
        enforce(b.dim() == 1 and b.shape[0] == filters,
                "b must have shape [%d] (one per filter of W %s), got %s",
                filters, list(W.shape), list(b.shape))
    _, heads, tails, _ = resolve_window(tuple(x.shape[2:]), kernels, strides, pads, dilations,
                                        legacy_pad, False)
    if heads != tails:
        x = F.pad(x, pad_widths(heads, tails))
        heads = (0,) * ndim
    Y = _CONV[ndim](x, w, b, stride=strides, padding=heads, dilation=dilations, groups=group)
    return restore_order(Y, order)



_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


@operator("ConvTranspose", prepare=window_arguments)
def conv_transpose(X, W, b=None, *, kernels=None, strides=None, pads=None, dilations=None,
                   legacy_pad=NOTSET, adj=0, adjs=None, group=1, order="NCHW",
                   kernel=None, kernel_h=None, kernel_w=None, stride=None, stride_h=None,
                   stride_w=None, pad=None, pad_t=None, pad_l=None, pad_b=None, pad_r=None,
                   dilation=None, dilation_h=None, dilation_w=None, global_pooling=0):
    """Caffe2's ConvTranspose (Caffe's Deconvolution): W is C x M/group x kernel (NCHW);
    out = (in - 1) * stride - pad_head - pad_tail + kernel + adj."""
    ndim = len(kernels)
    enforce(legacy_pad == NOTSET, "ConvTranspose: legacy_pad is not supported")
    enforce(all(d == 1 for d in dilations), "ConvTranspose: Caffe2 has no dilated form")
    enforce(X.dim() == ndim + 2 and W.dim() == ndim + 2, "ConvTranspose: X %s and W %s must be "
            "%d-D for a %d-D kernel", list(X.shape), list(W.shape), ndim + 2, ndim)
    x = channels_first(X, order)
    w = W if order == "NCHW" else W.permute(0, W.dim() - 1, *range(1, W.dim() - 1))
    enforce(w.shape[0] == x.shape[1], "ConvTranspose: X has %d channels but W %s expects %d",
            x.shape[1], list(W.shape), w.shape[0])
    adjs = tuple(adjs) if adjs else (adj,) * ndim
    heads, tails = tuple(pads[:ndim]), tuple(pads[ndim:])
    enforce(heads == tails, "ConvTranspose: asymmetric pads %s are not supported", list(pads))
    enforce(all(0 <= a < s for a, s in zip(adjs, strides)), "ConvTranspose: adj %s must be "
            "smaller than the stride %s", list(adjs), list(strides))
    Y = _CONV_TRANSPOSE[ndim](x, w, b, stride=strides, padding=heads, output_padding=adjs,
                              groups=group)
    return restore_order(Y, order)
