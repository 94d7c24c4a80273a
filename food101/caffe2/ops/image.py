"""Image-shaped ops: PadImage (constant / reflect / edge padding) and ResizeNearest.

Both are NCHW or NHWC and act on the two spatial dims, as Caffe2's.
"""
import torch
import torch.nn.functional as F

from food101.caffe2.errors import enforce
from food101.caffe2.ops.common import channels_first, restore_order
from food101.caffe2.ops.conv_pool_base import pad_widths
from food101.caffe2.ops.registry import operator

_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}


@operator("PadImage")
def pad_image(X, *, pad=None, pads=None, pad_t=None, pad_l=None, pad_b=None, pad_r=None,
              mode="constant", value=0.0, order="NCHW", kernel=None, stride=None):
    """X padded by pad_t/pad_l/pad_b/pad_r (or `pad` on every side, or `pads` = [t, l, b, r]).

    mode: constant (fill `value`), reflect (mirror without the edge) or edge (repeat the edge)."""
    enforce(mode in _PAD_MODES, "PadImage: mode=%r; valid: constant, reflect, edge" % (mode,))
    if pads:
        enforce(len(pads) == 4, "PadImage: pads must be [t, l, b, r], got %s" % list(pads))
        t, l, b, r = pads
    else:
        base = pad or 0
        t, l, b, r = (base if v is None else v for v in (pad_t, pad_l, pad_b, pad_r))
    enforce(min(t, l, b, r) >= 0, "PadImage: pads must be non-negative, got %s" % [t, l, b, r])
    enforce(X.dim() == 4, "PadImage: X must be 4-D (%s), got shape %s" % (order, list(X.shape)))
    x = channels_first(X, order)
    widths = pad_widths((t, l), (b, r))
    if mode == "constant":
        Y = F.pad(x, widths, mode="constant", value=float(value))
    else:
        Y = F.pad(x, widths, mode=_PAD_MODES[mode])
    return restore_order(Y, order)


@operator("ResizeNearest")
def resize_nearest(X, scales=None, *, width_scale=1.0, height_scale=1.0, order="NCHW"):
    """Nearest-neighbour resize: out = int(in * scale); output pixel y reads
    min(int(y / scale), in - 1), Caffe2's indexing. `scales` (optional input) = [h, w]."""
    if scales is not None:
        enforce(scales.numel() == 2, "ResizeNearest: scales must hold [height, width], got %s"
                % list(scales.shape))
        height_scale, width_scale = (float(v) for v in scales.reshape(-1).tolist())
    enforce(X.dim() == 4, "ResizeNearest: X must be 4-D, got shape %s" % list(X.shape))
    x = channels_first(X, order)
    h, w = x.shape[2], x.shape[3]
    out_h, out_w = int(h * height_scale), int(w * width_scale)
    rows = torch.clamp((torch.arange(out_h, device=x.device) / height_scale).long(), max=h - 1)
    cols = torch.clamp((torch.arange(out_w, device=x.device) / width_scale).long(), max=w - 1)
    return restore_order(x[:, :, rows][:, :, :, cols], order)
