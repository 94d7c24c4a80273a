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

