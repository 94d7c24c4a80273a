"""Shape and layout ops: Concat, Split, Reshape, Flatten, FlattenToVec, Transpose,
NCHW2NHWC, NHWC2NCHW, Squeeze, ExpandDims, Shape; Cast; StopGradient; copies between blobs
and devices (Copy, Alias, EnsureCPUOutput, CopyGPUToCPU, CopyCPUToGPU, ...).

Outputs may be views of their input (a transpose is a strided view, not a copy): blobs are
never modified in place, so sharing storage is safe. Shape-describing outputs (Concat's
split_info, Reshape's old_shape, Shape) are CPU tensors, as in Caffe2.
"""
import numpy as np
import torch

from food101.caffe2.errors import enforce
from food101.caffe2.ops.common import canonical_axis, check_order, shape_product
from food101.caffe2.ops.fill import STRING, TORCH_DTYPES, data_type
from food101.caffe2.ops.registry import operator


def _order_axis(axis, order, ndim):
    """Concat/Split: `axis` if given, else the channel axis of `order` (NCHW 1, NHWC 3)."""
    if axis is None:
        check_order(order)
        axis = 1 if order == "NCHW" else 3
    return canonical_axis(axis, ndim)


@operator("Concat", aliases=("DepthConcat",))
def concat(*inputs, axis=None, order="NCHW", add_axis=0):
    """(Y, split_info): inputs joined along `axis` (stacked on a new axis with add_axis=1);
    split_info holds each input's size along it (int32)."""
    enforce(len(inputs) > 0, "Concat needs at least one input")
    first = inputs[0]
    axis = _order_axis(axis, order, first.dim() + (1 if add_axis else 0))
    for i, X in enumerate(inputs[1:], 1):
        same = X.dim() == first.dim() and all(
            a == b for d, (a, b) in enumerate(zip(X.shape, first.shape)) if add_axis or d != axis)
        enforce(same, "Concat along axis %d%s: input %d has shape %s, input 0 has %s; all other "
                "dims must match" % (axis, " (add_axis)" if add_axis else "", i, list(X.shape),
                                     list(first.shape)))
    if add_axis:
        Y = torch.stack(inputs, dim=axis)
        sizes = [1] * len(inputs)
    else:
        Y = torch.cat(inputs, dim=axis)
        sizes = [X.shape[axis] for X in inputs]
    return Y, _split_info(tuple(sizes))


_SPLIT_INFOS = {}


def _split_info(sizes):
    """Concat's split_info, one tensor per distinct sizes (blobs are never written in place,
    so sharing it is safe): no host tensor built per call on the hot path."""
    info = _SPLIT_INFOS.get(sizes)
    if info is None:
        info = _SPLIT_INFOS[sizes] = torch.tensor(sizes, dtype=torch.int32)
    return info


@operator("Split", context=True, aliases=("DepthSplit",))
def split(X, split_sizes=None, *, axis=None, split=None, order="NCHW", add_axis=0, ctx):
    """X cut along `axis` into the op's outputs: sizes from the `split` argument or the second
    input, else equal parts. add_axis=1 cuts into slices of 1 and drops the axis."""
    axis = _order_axis(axis, order, X.dim())
    count = ctx.num_outputs
    enforce(split is None or split_sizes is None,
            "Split takes the sizes either as the argument `split` or as a second input, not both")
    if split_sizes is not None:
        split = [int(s) for s in split_sizes.tolist()]
    if split:
        sizes = [int(s) for s in split]
        enforce(len(sizes) == count, "split=%s has %d sizes but the op has %d outputs"
                % (sizes, len(sizes), count))
    else:
        enforce(X.shape[axis] % count == 0, "[enforce fail at concat_split_op.h:134] "
                "input_channels %% OutputSize() == 0. %d vs 0. If you did not specify split "
                "explicitly, the number of input channels should be divisible by the output size. "
                "(X %s along axis %d, %d outputs)"
                % (X.shape[axis] % count, list(X.shape), axis, count))
        sizes = [X.shape[axis] // count] * count
    enforce(sum(sizes) == X.shape[axis], "split sizes %s add up to %d, but X %s has %d along axis "
            "%d" % (sizes, sum(sizes), list(X.shape), X.shape[axis], axis))
    parts = torch.split(X, sizes, dim=axis)
    if add_axis:
        enforce(all(s == 1 for s in sizes), "Split with add_axis=1 needs slices of size 1, got %s"
                % sizes)
        parts = [p.squeeze(axis) for p in parts]
    return tuple(parts)


@operator("Reshape")
def reshape(X, new_shape=None, *, shape=None):
    """(Y, old_shape): X with the shape from the argument `shape` or the second input; a 0 copies
    X's dim at that position (unless X is empty), one -1 is inferred (0 when the other dims
    multiply to 0). old_shape is X's shape (int64)."""
    enforce((shape is None) != (new_shape is None),
            "Reshape takes the new shape either as the argument `shape` or as a second input, "
            "exactly one of them")
    wanted = [int(d) for d in (new_shape.tolist() if new_shape is not None else shape)]
    total = X.numel()
    actual = list(wanted)
    if total != 0:  # as Caffe2: an empty X keeps its 0s literal (X (0, 3) -> shape (0, 0))
        actual = [X.shape[i] if d == 0 and i < X.dim() else d for i, d in enumerate(wanted)]
    enforce(all(d >= -1 for d in actual), "shape %s: sizes must be >= -1" % wanted)
    unknown = [i for i, d in enumerate(actual) if d == -1]
    enforce(len(unknown) <= 1, "Argument `shape` has more than one missing dimension.")
    size = shape_product(d for d in actual if d != -1)
    enforce(size != 0 or total == 0, "Can not reshape a non-zero size (%d) tensor to zero size."
            % total)
    if unknown:
        enforce(size == 0 or total % size == 0, "Argument `shape` does not agree with the input "
                "data. (%d vs %d)" % (total, size))
        actual[unknown[0]] = 0 if size == 0 else total // size
    else:
        enforce(total == size, "Argument `shape` does not agree with the input data. (%d != %d)"
                % (total, size))
    return X.reshape(actual), torch.tensor(list(X.shape), dtype=torch.int64)


@operator("Flatten")
def flatten(X, *, axis=1):
    """X as 2-D: the dims before `axis` become the rows, the rest the columns."""
    enforce(0 <= axis <= X.dim(), "axis=%d is out of range for X %s" % (axis, list(X.shape)))
    return X.reshape(shape_product(X.shape[:axis]), shape_product(X.shape[axis:]))


@operator("FlattenToVec")
def flatten_to_vec(X):
    return X.reshape(-1)


@operator("Transpose")
def transpose(X, *, axes=None):
    """X with its dims permuted by `axes` (default: reversed)."""
    if not axes:
        return X.permute(*reversed(range(X.dim())))
    enforce(sorted(axes) == list(range(X.dim())), "axes=%s is not a permutation of X's %d dims "
            "(X %s)" % (list(axes), X.dim(), list(X.shape)))
    return X.permute(*axes)


@operator("NCHW2NHWC")
def nchw_to_nhwc(X):
    enforce(X.dim() >= 3, "NCHW2NHWC needs at least 3 dims, got X %s" % list(X.shape))
    return X.permute(0, *range(2, X.dim()), 1)


@operator("NHWC2NCHW")
def nhwc_to_nchw(X):
    enforce(X.dim() >= 3, "NHWC2NCHW needs at least 3 dims, got X %s" % list(X.shape))
    return X.permute(0, X.dim() - 1, *range(1, X.dim() - 1))


@operator("Squeeze")
def squeeze(X, *, dims=()):
    """X without the listed dims, each of which must have size 1."""
    dims = sorted({canonical_axis(d, X.dim(), "dims") for d in dims})
    for d in dims:
        enforce(X.shape[d] == 1, "Squeeze: dim %d of X %s has size %d, not 1"
                % (d, list(X.shape), X.shape[d]))
    return X.squeeze(tuple(dims)) if dims else X


@operator("ExpandDims")
def expand_dims(X, *, dims=()):
    """X with size-1 dims inserted at the listed positions (of the result)."""
    Y = X
    for d in sorted(set(dims)):
        enforce(0 <= d <= Y.dim(), "ExpandDims: dim %d is out of range for a %d-D result "
                "(X %s, dims %s)" % (d, Y.dim() + 1, list(X.shape), list(dims)))
        Y = Y.unsqueeze(d)
    return Y


@operator("Shape")
def shape(X, *, axes=None):
    """X's shape (or the sizes of `axes`) as an int64 CPU tensor."""
    dims = list(X.shape) if not axes else [X.shape[canonical_axis(a, X.dim(), "axes")] for a in axes]
    return torch.tensor(dims, dtype=torch.int64)


def _cast_arguments(args):
    to = data_type(args["to"], "to")
    args["to"] = STRING if to == STRING else TORCH_DTYPES[to]
    return args


def _to_string(value):
    """C++ std::to_string, which Caffe2's Cast uses: integers plainly, floats as "%f"."""
    if isinstance(value, bool):
        return str(int(value))
    return "%f" % value if isinstance(value, float) else str(value)


@operator("Cast", prepare=_cast_arguments, grad_inputs=(0,))
def cast(X, *, to=1):
    """X converted to the Caffe2 DataType `to` (an enum value or its name, e.g. "FLOAT").
    Float-to-integer conversion truncates toward zero, as C++ static_cast. To STRING gives a
    host object array of byte strings (std::to_string); from STRING parses each as a double."""
    if isinstance(X, np.ndarray):  # a string tensor
        if to == STRING:
            return X.copy()
        values = [float(v.decode("utf-8") if isinstance(v, bytes) else v) for v in X.reshape(-1)]
        return torch.tensor(values, dtype=torch.float64).to(to).reshape(X.shape)
    if to == STRING:
        strings = np.empty(X.numel(), dtype=object)
        strings[:] = [_to_string(v).encode("utf-8") for v in X.detach().cpu().reshape(-1).tolist()]
        return strings.reshape(tuple(X.shape))
    return X.to(to)


@operator("StopGradient", grad_inputs=())
def stop_gradient(X):
    return X.detach()


@operator("Copy")
def copy(X):
    return X.clone() if isinstance(X, torch.Tensor) else np.array(X, copy=True)   # string tensors


@operator("Alias", aliases=("EnsureDense",))
def alias(X):
    return X


@operator("EnsureCPUOutput", aliases=("CopyGPUToCPU",))
def to_cpu(X):
    return X.cpu()


@operator("CopyCPUToGPU", context=True, aliases=("CopyFromCPUInput",))
def to_op_device(X, *, ctx):
    """X on the op's device (CUDA for CopyCPUToGPU, as its DeviceOption says)."""
    return X.to(ctx.device)


@operator("FloatToHalf")
def float_to_half(X):
    """float32 -> float16 (multi-precision SGD keeps fp16 params with fp32 master copies)."""
    enforce(X.dtype == torch.float32, "FloatToHalf needs float32 input, got %s" % X.dtype)
    return X.half()


@operator("HalfToFloat")
def half_to_float(X):
    enforce(X.dtype == torch.float16, "HalfToFloat needs float16 input, got %s" % X.dtype)
    return X.float()
