"""Window geometry shared by Conv and the pooling ops (Caffe2's ConvPoolOpBase).

Caffe2 spells one window in many ways: `kernel`, `kernel_h`/`kernel_w` or `kernels`; `stride`,
`stride_h`/`stride_w` or `strides`; `pad`, `pad_t`/`pad_l`/`pad_b`/`pad_r` or
`pads` = [head of each spatial dim..., tail of each spatial dim...] (2-D: [t, l, b, r]);
`dilation`, `dilation_h`/`dilation_w` or `dilations`. `window_arguments` (the ops' `prepare`
hook) folds them, once per net, into the list forms `kernels`, `strides`, `pads`, `dilations`.

Some padding depends on the input size and is resolved per call by `resolve_window`
(`legacy_pad`, caffe2_legacy.proto):

    NOTSET (0)                 the given pads; out = floor((in + head + tail - dk) / s) + 1
    VALID (1)                  no padding
    SAME (2)                   out = ceil(in / s); the extra pad goes to the tail
    CAFFE_LEGACY_POOLING (3)   Caffe's ceil-mode size, out = ceil((in + 2 * head - k) / s) + 1
                               (less one if the last window would start in the padding); the
                               tail pad grows so the last window fits

(dk = dilation * (kernel - 1) + 1). `global_pooling=1` makes the kernel the whole image.
"""
import math

from food101.caffe2.errors import enforce
from food101.caffe2.ops.common import check_order

NOTSET, VALID, SAME, CAFFE_LEGACY_POOLING = 0, 1, 2, 3


def window_arguments(args):
    """prepare hook: the scalar and per-side forms folded into kernels/strides/pads/dilations."""
    legacy_pad = args.pop("legacy_pad")
    global_pooling = bool(args.pop("global_pooling", 0))
    kernels = _per_dim(args, "kernel", "kernels", ("kernel_h", "kernel_w"), default=None)
    ndim = len(kernels) if kernels is not None else 2
    strides = _per_dim(args, "stride", "strides", ("stride_h", "stride_w"), default=1, ndim=ndim)
    dilations = _per_dim(args, "dilation", "dilations", ("dilation_h", "dilation_w"), default=1,
                         ndim=ndim)
    pads_given = any(args.get(k) is not None for k in ("pad", "pads", "pad_t", "pad_l", "pad_b", "pad_r"))
    pads = _pads(args, ndim)
    enforce(legacy_pad in (NOTSET, VALID, SAME, CAFFE_LEGACY_POOLING),
            "legacy_pad=%r is not a Caffe2 LegacyPadding (0 NOTSET, 1 VALID, 2 SAME, "
            "3 CAFFE_LEGACY_POOLING)" % (legacy_pad,))
    enforce(not (legacy_pad in (VALID, SAME) and pads_given),
            "legacy_pad=%d (%s) computes the padding itself; do not also set pad/pads"
            % (legacy_pad, "VALID" if legacy_pad == VALID else "SAME"))
    if global_pooling:
        enforce(all(p == 0 for p in pads) and all(s == 1 for s in strides)
                and all(d == 1 for d in dilations),
                "global_pooling is set: pad, stride and dilation must not be set")
    else:
        enforce(kernels is not None and all(k > 0 for k in kernels),
                "the kernel size must be set explicitly and be positive (kernel, kernel_h and "
                "kernel_w, or kernels); got %s" % (list(kernels) if kernels else "none"))
    enforce(all(s > 0 for s in strides), "strides must be positive, got %s" % list(strides))
    enforce(all(d > 0 for d in dilations), "dilations must be positive, got %s" % list(dilations))
    enforce(all(p >= 0 for p in pads), "pads must be non-negative, got %s" % list(pads))
    order = args.get("order", "NCHW")
    check_order(order)
    args.update(kernels=kernels, strides=strides, pads=pads, dilations=dilations,
                legacy_pad=legacy_pad, global_pooling=global_pooling)
    return args


def _per_dim(args, scalar, plural, hw, default, ndim=None):
    values = args.pop(plural, None)
    one = args.pop(scalar, None)
    h, w = (args.pop(name, None) for name in hw)
    if values is not None and len(values):
        result = tuple(int(v) for v in values)
    elif one is not None or h is not None or w is not None:
        base = default if one is None else one
        result = (int(base if h is None else h), int(base if w is None else w))
    elif default is None:
        return None
    else:
        result = (default,) * ndim
    if ndim is not None:
        enforce(len(result) == ndim, "%s has %d values but the kernel has %d dims"
                % (plural, len(result), ndim))
    return result


def _pads(args, ndim):
    pads = args.pop("pads", None)
    pad = args.pop("pad", None)
    sides = [args.pop(name, None) for name in ("pad_t", "pad_l", "pad_b", "pad_r")]
    if pads is not None and len(pads):
        enforce(len(pads) == 2 * ndim, "pads has %d values; a %d-D window needs %d "
                "(heads then tails)" % (len(pads), ndim, 2 * ndim))
        return tuple(int(p) for p in pads)
    base = 0 if pad is None else int(pad)
    if ndim != 2:
        return (base,) * (2 * ndim)
    return tuple(base if side is None else int(side) for side in sides)


def resolve_window(sizes, kernels, strides, pads, dilations, legacy_pad, global_pooling):
    """-> (kernels, heads, tails, out_sizes) for input spatial `sizes` (Caffe2's ComputeSizeAndPad).

    Memoised: a net calls it with the same few geometries every iteration."""
    key = (tuple(sizes), tuple(kernels or ()), tuple(strides or ()), tuple(pads or ()),
           tuple(dilations or ()), legacy_pad, bool(global_pooling))
    cached = _WINDOWS.get(key)
    if cached is None:
        cached = _WINDOWS[key] = _resolve_window(sizes, kernels, strides, pads, dilations,
                                                 legacy_pad, global_pooling)
    return cached


_WINDOWS = {}


def _resolve_window(sizes, kernels, strides, pads, dilations, legacy_pad, global_pooling):
    ndim = len(sizes)
    if global_pooling:
        return tuple(sizes), (0,) * ndim, (0,) * ndim, (1,) * ndim
    enforce(len(kernels) == ndim, "the kernel has %d spatial dims (%s) but the input has %d (%s)"
            % (len(kernels), list(kernels), ndim, list(sizes)))
    heads, tails, outs = [], [], []
    for i in range(ndim):
        head, tail, out = _size_and_pads(sizes[i], kernels[i], strides[i], dilations[i],
                                         pads[i], pads[i + ndim], legacy_pad)
        enforce(out > 0, "the window (kernel %s, stride %s, pads %s, dilation %s) does not fit "
                "the input's spatial size %s" % (list(kernels), list(strides), list(pads),
                                                  list(dilations), list(sizes)))
        heads.append(head)
        tails.append(tail)
        outs.append(out)
    return tuple(kernels), tuple(heads), tuple(tails), tuple(outs)


def _size_and_pads(size, kernel, stride, dilation, head, tail, legacy_pad):
    span = dilation * (kernel - 1) + 1
    if legacy_pad == VALID:
        return 0, 0, _floor_out(size - span, stride)
    if legacy_pad == SAME:
        enforce(dilation == 1, "legacy_pad=SAME does not support dilation")
        target = (size + stride - 1) // stride
        needed = (target - 1) * stride + kernel - size
        head = int(needed / 2)  # C++ division: truncates toward zero
        return head, needed - head, _floor_out(size + needed - span, stride)
    if legacy_pad == CAFFE_LEGACY_POOLING:
        # Caffe rounds the output size up; Caffe2 then pads the tail to make it fit. Like
        # Caffe2, this uses the undilated kernel and ignores any tail pad that was given.
        out = math.ceil((size + 2 * head - kernel) / stride + 1)
        if head > 0 and (out - 1) * stride >= size + head:
            out -= 1
        floor_out = int((size + 2 * head - kernel) / stride + 1)
        return head, head + stride * (out - floor_out), out
    return head, tail, _floor_out(size + head + tail - span, stride)


def _floor_out(extent, stride):
    return extent // stride + 1 if extent >= 0 else 0


def pad_widths(heads, tails):
    """(heads, tails) per spatial dim in F.pad's order: last dim first, (head, tail) each."""
    widths = []
    for head, tail in zip(reversed(heads), reversed(tails)):
        widths += [head, tail]
    return tuple(widths)
