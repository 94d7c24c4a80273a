"""workspace.GetOperatorCost: Caffe2's per-op cost inference, (flops, bytes written).

Shapes come from the input blobs and the op's arguments alone (as Caffe2's cost functions, which
check nothing else); the counts follow Caffe2's (a float is 4 bytes whatever the dtype):

    Conv / Conv2D / Conv3D / ConvNd   2 * |Y| * |W| / W.dims(0)   (a multiply-add per weight)
    FC                                2 * |Y| * K + |Y|            (bias added once per output)
    Add / Sub / Mul / Div / Sum       (inputs - 1) * |Y|
    Relu, Concat                      0
Any other op raises, as Caffe2 does for an op without a cost function.
"""
import numpy as np

from food101.caffe2.errors import Caffe2Error
from food101.caffe2.utils import ArgsToDict

FLOAT_BYTES = 4


def _conv_output_numel(args, x, w):
    """|Y| of a Conv from the argument rules alone (cost inference does not check channels)."""
    nchw = args.get("order", b"NCHW") in (b"NCHW", "NCHW")
    spatial_in = x[2:] if nchw else x[1:-1]
    n = len(spatial_in)

    def per_dim(plural, single, names, default):
        if plural in args:
            return list(args[plural])
        if single in args:
            return [args[single]] * n
        if names and all(k in args for k in names[:n]):
            return [args[k] for k in names[:n]]
        return [default] * n

    kernel = per_dim("kernels", "kernel", ("kernel_h", "kernel_w"), None)
    if kernel[0] is None:
        kernel = list(w[2:] if nchw else w[1:-1])
    stride = per_dim("strides", "stride", ("stride_h", "stride_w"), 1)
    dilation = per_dim("dilations", "dilation", ("dilation_h", "dilation_w"), 1)
    if "pads" in args:
        pads = list(args["pads"])
    elif "pad" in args:
        pads = [args["pad"]] * (2 * n)
    else:
        pads = ([args.get("pad_t", 0), args.get("pad_l", 0)][:n]
                + [args.get("pad_b", 0), args.get("pad_r", 0)][:n])
    out = [(size + pads[i] + pads[i + n] - (dilation[i] * (kernel[i] - 1) + 1)) // stride[i] + 1
           for i, size in enumerate(spatial_in)]
    return int(x[0] * w[0] * np.prod(out, dtype=np.int64))


def _conv(args, shapes):
    x, w = shapes[0], shapes[1]
    y = _conv_output_numel(args, x, w)
    return 2 * y * int(np.prod(w[1:], dtype=np.int64)), y


def _fc(args, shapes):
    x, w = shapes[0], shapes[1]
    axis, axis_w = args.get("axis", 1), args.get("axis_w", 1)
    m = int(np.prod(x[:axis], dtype=np.int64))
    k = int(np.prod(x[axis:], dtype=np.int64))
    n = int(np.prod(w[:axis_w], dtype=np.int64))
    return 2 * m * n * k + m * n, m * n


def _elementwise(args, shapes):
    y = max(int(np.prod(s, dtype=np.int64)) for s in shapes)
    return max(len(shapes) - 1, 1) * y, y


def _relu(args, shapes):
    return 0, int(np.prod(shapes[0], dtype=np.int64))


def _concat(args, shapes):
    return 0, sum(int(np.prod(s, dtype=np.int64)) for s in shapes)


_COSTS = {
    "Conv": _conv, "Conv1D": _conv, "Conv2D": _conv, "Conv3D": _conv, "ConvNd": _conv,
    "FC": _fc,
    "Add": _elementwise, "Sub": _elementwise, "Mul": _elementwise, "Div": _elementwise,
    "Sum": _elementwise,
    "Relu": _relu, "Concat": _concat,
}


def operator_cost(op, blob_names, workspace):
    """(flops, bytes written) of OperatorDef `op` given the shapes of `blob_names` in
    `workspace` (the op's inputs, in order)."""
    cost_of = _COSTS.get(op.type)
    if cost_of is None:
        raise Caffe2Error("[enforce fail at operator_schema.h:245] cost_inference_function_. "
                          "Cost inference function not defined. (op type %r)" % op.type)
    shapes = [tuple(workspace.blobs[str(b)].shape) for b in blob_names]
    flops, outputs = cost_of(ArgsToDict(op.arg), shapes)
    return int(flops), int(outputs * FLOAT_BYTES)
