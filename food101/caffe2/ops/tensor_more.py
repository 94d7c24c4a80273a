"""More of Caffe2's tensor ops: Slice, Range, Size, ResizeLike, CopyOnDeviceLike, NanCheck,
DiagonalFill, LengthsRangeFill, LengthsToRanges, LengthsToShape, LengthsGather, Gather,
SplitByLengths, MakeTwoClass, HasElements, IsEmpty, SpaceToBatch, BatchToSpace,
LengthsToSegmentIds, LengthsToWeights, SegmentIdsToLengths, SegmentIdsToRanges, Unique,
RowMul."""
import math

import torch

from food101.caffe2.errors import Caffe2Error, enforce
from food101.caffe2.ops.common import canonical_axis
from food101.caffe2.ops.fill import TORCH_DTYPES, data_type, output_shape
from food101.caffe2.ops.registry import operator


@operator("Slice", grad_inputs=(0,))
def slice_(X, starts_blob=None, ends_blob=None, *, starts=(), ends=()):
    """X[starts:ends] per dim; a negative end counts from one past the end (-1: to the end)."""
    if starts_blob is not None:
        starts = [int(v) for v in starts_blob.reshape(-1).tolist()]
        ends = [int(v) for v in ends_blob.reshape(-1).tolist()]
    enforce(len(starts) == len(ends) and len(starts) <= X.dim(),
            "Slice: starts %s and ends %s must have one entry per leading dim of X %s",
            list(starts), list(ends), list(X.shape))
    sliced = [d for d, (s, e) in enumerate(zip(starts, ends)) if (s, e) != (0, -1)]
    enforce(len(sliced) <= 1, "Slice: only one dim may be sliced (as Caffe2), got starts %s, "
            "ends %s", list(starts), list(ends))
    index = []
    for d, (s, e) in enumerate(zip(starts, ends)):
        size = X.shape[d]
        s = s + size + 1 if s < 0 else s
        e = e + size + 1 if e < 0 else e
        enforce(0 <= s <= e <= size, "Slice: dim %d of X %s: start %d, end %d out of range",
                d, list(X.shape), s, e)
        index.append(slice(s, e))
    return X[tuple(index)].clone()


@operator("Range", grad_inputs=())
def range_(*bounds):
    enforce(1 <= len(bounds) <= 3, "Range takes 1 to 3 inputs (stop / start, stop / start, "
            "stop, step), got %d", len(bounds))
    values = [b.reshape(()).item() for b in bounds]
    start, stop, step = (0, values[0], 1) if len(values) == 1 else (
        values[0], values[1], 1) if len(values) == 2 else tuple(values)
    enforce(step != 0, "Step size cannot be 0.")
    dtype = bounds[0].dtype
    diff = stop - start
    if dtype.is_floating_point:
        length = math.ceil(diff / step)
    else:  # C++ integer division (toward zero), plus one if it falls short, as Caffe2
        length = abs(diff) // abs(step) * (1 if (diff >= 0) == (step > 0) else -1)
        length += 1 if length * step < diff else 0
    if length <= 0:  # numpy's behaviour: an empty range, not an error
        return torch.empty(0, dtype=dtype)
    return (start + step * torch.arange(length, dtype=torch.float64 if dtype.is_floating_point
                                        else torch.int64)).to(dtype)


@operator("Size", grad_inputs=())
def size(X):
    return torch.tensor(X.numel(), dtype=torch.int64)


@operator("ResizeLike")
def resize_like(A, B):
    enforce(A.numel() == B.numel(), "ResizeLike: A %s and B %s differ in size",
            list(A.shape), list(B.shape))
    return A.reshape(B.shape)


@operator("CopyOnDeviceLike", grad_inputs=(0,))
def copy_on_device_like(A, B):
    return A.to(B.device, copy=True)


@operator("NanCheck", grad_inputs=(0,))
def nan_check(X, *others):
    for i, tensor in enumerate((X,) + others):
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise Caffe2Error("NanCheck: input %d has NaN or infinite values" % i)
    return X.clone()


@operator("DiagonalFill", grad_inputs=())
def diagonal_fill(shape_source=None, *, value=0.0, dtype=1, shape=(), extra_shape=(),
                  input_as_shape=0):
    """Zeros with `value` where all indices are equal (the main diagonal of any rank)."""
    dims = list(output_shape(shape_source, shape, extra_shape, input_as_shape))
    enforce(len(dims) >= 2, "DiagonalFill needs a shape of rank >= 2, got %s", dims)
    torch_dtype = TORCH_DTYPES[data_type(dtype)]
    out = torch.zeros(dims, dtype=torch_dtype)
    n = min(dims)
    index = torch.arange(n)
    out[(index,) * len(dims)] = value
    return out


@operator("LengthsRangeFill", grad_inputs=())
def lengths_range_fill(lengths):
    return torch.cat([torch.arange(int(n), dtype=torch.int32) for n in lengths.tolist()]) \
        if lengths.numel() else torch.zeros(0, dtype=torch.int32)


@operator("LengthsToRanges", grad_inputs=())
def lengths_to_ranges(lengths):
    lengths = lengths.to(torch.int32).reshape(-1)
    offsets = torch.cumsum(lengths, 0) - lengths
    return torch.stack([offsets, lengths], dim=1).to(torch.int32)


@operator("LengthsToShape", grad_inputs=())
def lengths_to_shape(lengths):
    values = lengths.reshape(-1).tolist()
    enforce(len(set(values)) <= 1, "LengthsToShape: all lengths must be equal, got %s", values)
    return torch.tensor([len(values), values[0] if values else 0], dtype=torch.int32)


@operator("LengthsGather", grad_inputs=(0,))
def lengths_gather(items, lengths, indices):
    lengths = lengths.reshape(-1).to(torch.int64)
    offsets = torch.cumsum(lengths, 0) - lengths
    parts = [items[int(offsets[i]):int(offsets[i]) + int(lengths[i])]
             for i in indices.reshape(-1).tolist()]
    return torch.cat(parts) if parts else items[:0]


@operator("Gather", grad_inputs=(0,))
def gather(data, indices, *, axis=0):
    """data's slices along `axis` named by indices -> data.shape[:axis] + indices.shape +
    data.shape[axis + 1:]; a negative index counts from the end once, as Caffe2's kernel.
    (Its gradient in a net built by AddGradientOperators is Caffe2's sparse GradientSlice:
    executor.SPARSE_GRADIENT_INPUTS.)"""
    axis = canonical_axis(axis, data.dim())
    size = data.shape[axis]
    flat = indices.reshape(-1).long()
    flat = torch.where(flat < 0, flat + size, flat)
    if flat.numel():
        low, high = int(flat.min()), int(flat.max())
        enforce(low >= 0 and high < size, "Gather: INDICES element is out of DATA bounds, "
                "id=%d axis_dim=%d", low if low < 0 else high, size)
    picked = data.index_select(axis, flat.to(data.device))
    return picked.reshape(data.shape[:axis] + indices.shape + data.shape[axis + 1:])


@operator("SplitByLengths", grad_inputs=(0,), context=True)
def split_by_lengths(data, lengths, *, ctx, axis=None, order="NCHW"):
    """The `lengths` (groups of equal count per output) summed into one piece per output;
    without `axis` the channel axis of `order`, as Caffe2's Split."""
    if axis is None:
        axis = 1 if order == "NCHW" else -1
    n = ctx.num_outputs
    lengths = [int(v) for v in lengths.reshape(-1).tolist()]
    enforce(len(lengths) % n == 0, "SplitByLengths: %d lengths do not divide into %d outputs",
            len(lengths), n)
    group = len(lengths) // n
    sizes = [sum(lengths[i * group:(i + 1) * group]) for i in range(n)]
    axis = canonical_axis(axis, data.dim())
    enforce(sum(sizes) == data.shape[axis], "SplitByLengths: lengths sum to %d, data has %d "
            "along axis %d", sum(sizes), data.shape[axis], axis)
    return tuple(t.clone() for t in torch.split(data, sizes, dim=axis))


@operator("MakeTwoClass")
def make_two_class(X):
    return torch.stack([1 - X, X], dim=-1)


@operator("HasElements", grad_inputs=())
def has_elements(*inputs):
    """A bool scalar: does any input hold an element."""
    enforce(len(inputs) >= 1, "HasElements needs at least one input")
    return torch.tensor(any(X.numel() > 0 for X in inputs))


@operator("IsEmpty", grad_inputs=())
def is_empty(X):
    return torch.tensor(X.numel() == 0)


def _space_batch_pads(pad, pad_t, pad_l, pad_b, pad_r, order, op):
    enforce(order == "NCHW", "%s: only order NCHW is supported (as Caffe2), got %r", op, order)
    return [pad if p is None else p for p in (pad_t, pad_l, pad_b, pad_r)]


@operator("SpaceToBatch")
def space_to_batch(X, *, pad=0, pad_t=None, pad_l=None, pad_b=None, pad_r=None, block_size=2,
                   order="NCHW"):
    """N C H W -> (block^2 N) C H' W': X zero-padded, each block x block tile spread over the
    batch; batch index (row offset * block + column offset) * N + n."""
    top, left, bottom, right = _space_batch_pads(pad, pad_t, pad_l, pad_b, pad_r, order,
                                                 "SpaceToBatch")
    enforce(X.dim() == 4, "SpaceToBatch: X must be 4-D, got %s", list(X.shape))
    n, c, h, w = X.shape
    h, w = h + top + bottom, w + left + right
    enforce(h % block_size == 0 and w % block_size == 0, "SpaceToBatch: padded height %d and "
            "width %d must be multiples of block_size %d", h, w, block_size)
    padded = torch.nn.functional.pad(X, (left, right, top, bottom))
    tiles = padded.reshape(n, c, h // block_size, block_size, w // block_size, block_size)
    return tiles.permute(3, 5, 0, 1, 2, 4).reshape(block_size * block_size * n, c,
                                                   h // block_size, w // block_size)


@operator("BatchToSpace")
def batch_to_space(X, *, pad=0, pad_t=None, pad_l=None, pad_b=None, pad_r=None, block_size=2,
                   order="NCHW"):
    """SpaceToBatch's inverse: the padding is cropped off."""
    top, left, bottom, right = _space_batch_pads(pad, pad_t, pad_l, pad_b, pad_r, order,
                                                 "BatchToSpace")
    enforce(X.dim() == 4 and X.shape[0] % (block_size * block_size) == 0, "BatchToSpace: X "
            "must be 4-D with a batch that is a multiple of block_size^2, got %s", list(X.shape))
    b, c, h, w = X.shape
    n = b // (block_size * block_size)
    tiles = X.reshape(block_size, block_size, n, c, h, w).permute(2, 3, 4, 0, 5, 1)
    space = tiles.reshape(n, c, h * block_size, w * block_size)
    return space[:, :, top:h * block_size - bottom, left:w * block_size - right]


def _int32_lengths(lengths, op):
    enforce(lengths.dtype == torch.int32, "%s: lengths must be int32 (Caffe2 reads them as int), "
            "got %s", op, lengths.dtype)
    return lengths.reshape(-1).long()


@operator("LengthsToSegmentIds", grad_inputs=())
def lengths_to_segment_ids(lengths):
    """[2, 0, 3] -> [0, 0, 2, 2, 2] (int32)."""
    lengths = _int32_lengths(lengths, "LengthsToSegmentIds")
    ids = torch.arange(lengths.numel(), device=lengths.device)
    return torch.repeat_interleave(ids, lengths).to(torch.int32)


@operator("LengthsToWeights", grad_inputs=())
def lengths_to_weights(lengths, *, power=0.5):
    """Each segment's items weighted 1 / length^power (float32)."""
    lengths = _int32_lengths(lengths, "LengthsToWeights")
    weights = lengths.double().pow(-power).float()
    return torch.repeat_interleave(weights, lengths)


def _segment_lengths(segment_ids, count=None):
    ids = segment_ids.reshape(-1).long()
    if count is None:
        count = int(ids.max()) + 1 if ids.numel() else 0
    return torch.bincount(ids, minlength=count)[:count] if ids.numel() else \
        torch.zeros(count, dtype=torch.long, device=ids.device)


@operator("SegmentIdsToLengths", grad_inputs=())
def segment_ids_to_lengths(segment_ids, data_to_infer_dim=None):
    """Sorted segment ids -> the length of every segment 0..max (int32); with a second input,
    as many segments as its first dimension."""
    count = None if data_to_infer_dim is None else data_to_infer_dim.shape[0]
    return _segment_lengths(segment_ids, count).to(torch.int32)


@operator("SegmentIdsToRanges", grad_inputs=())
def segment_ids_to_ranges(segment_ids, data_to_infer_dim=None):
    """Sorted segment ids -> [start, length] of every segment 0..max (int32, N x 2)."""
    count = None if data_to_infer_dim is None else data_to_infer_dim.shape[0]
    lengths = _segment_lengths(segment_ids, count)
    starts = torch.cumsum(lengths, 0) - lengths
    return torch.stack([starts, lengths], dim=1).to(torch.int32).reshape(-1, 2)


@operator("Unique", grad_inputs=())
def unique(X):
    """-> (the distinct values, sorted; for each input element the index of its value, int32)."""
    enforce(X.dim() == 1, "Unique: input should be a vector, got shape %s", list(X.shape))
    values, remapping = torch.unique(X, sorted=True, return_inverse=True)
    return values, remapping.to(torch.int32)


@operator("RowMul")
def row_mul(X, w):
    """Row i of X times the scalar w[i]."""
    n = X.shape[0]
    enforce(w.numel() == n, "RowMul: w must hold one value per row of X (%d), has %d",
            n, w.numel())
    return X * w.reshape((n,) + (1,) * (X.dim() - 1))


@operator("LastNWindowCollector", grad_inputs=())
def last_n_window_collector(buffer, cursor, X, mutex=None, num_visited=None, *,
                            num_to_collect=None):
    """-> (buffer, cursor[, num_visited]): the last num_to_collect rows seen, a ring buffer
    written at `cursor` (which wraps); it grows until full. num_visited counts every row."""
    enforce(num_to_collect is not None and num_to_collect > 0,
            "LastNWindowCollector: num_to_collect must be a positive argument")
    n = num_to_collect
    rows = X.shape[0] if X.dim() > 0 else 1
    X = X.reshape((rows,) + tuple(X.shape[1:]))
    visited = None if num_visited is None else num_visited + rows
    if buffer.numel() == 0:
        buffer = X.new_zeros((0,) + tuple(X.shape[1:]))
    if rows == 0:
        return (buffer, cursor) if visited is None else (buffer, cursor, visited)
    enforce(buffer.shape[1:] == X.shape[1:], "LastNWindowCollector: rows of %s do not fit a "
            "buffer of %s", list(X.shape), list(buffer.shape))
    take = X[rows - min(rows, n):]
    grow = min(n, buffer.shape[0] + take.shape[0]) - buffer.shape[0]
    if grow > 0:
        buffer = torch.cat([buffer, buffer.new_zeros((grow,) + tuple(buffer.shape[1:]))])
    else:
        buffer = buffer.clone()
    start = int(cursor.reshape(-1)[0]) if cursor.numel() else 0
    if rows > n:  # more rows than the window: Caffe2 keeps the last n in order, cursor 0
        start = 0
    positions = (start + torch.arange(take.shape[0])) % n
    buffer[positions.to(buffer.device)] = take.to(buffer.dtype)
    new_cursor = torch.full_like(cursor, (start + take.shape[0]) % n)
    return (buffer, new_cursor) if visited is None else (buffer, new_cursor, visited)
