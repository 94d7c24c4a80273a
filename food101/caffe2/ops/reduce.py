"""Reductions: ReduceSum/Mean/Max/Min over `axes` (default all, `keepdims` default 1) and the
ReduceFront*/ReduceBack* forms over the first / last `num_reduce_dim` dims, with Caffe2's
optional `lengths` input and its written-out gradient ops.

ReduceMax/ReduceMin give the gradient to every element equal to the result, as Caffe2 does.
"""
import torch

from food101.caffe2.errors import enforce
from food101.caffe2.ops.common import canonical_axis, shape_product, with_max_gradient
from food101.caffe2.ops.registry import operator


def _reduce(X, dims, keepdims, kind):
    if not dims:  # torch would read an empty dim list as "all dims"
        return X
    if kind == "sum":
        Y = X.sum(dim=dims, keepdim=True)
    elif kind == "mean":
        Y = X.mean(dim=dims, keepdim=True)
    else:
        with torch.no_grad():
            Y = X.amax(dim=dims, keepdim=True) if kind == "max" else X.amin(dim=dims, keepdim=True)
        Y = with_max_gradient(Y, [X], reduce_dims=dims)
    return Y if keepdims else Y.squeeze(dims)


def _axes(X, axes):
    if not axes:  # unset or empty: every dim, as in Caffe2
        return tuple(range(X.dim()))
    return tuple(sorted({canonical_axis(a, X.dim(), "axes") for a in axes}))


def _front_back_2d(shape, num_reduce_dim, front):
    """Caffe2's (rows, cols) view: front ops reduce the rows (the first num_reduce_dim dims),
    back ops the cols (the last num_reduce_dim dims); returns (rows, cols, kept dims)."""
    ndim = len(shape)
    enforce(0 <= num_reduce_dim <= ndim, "num_reduce_dim=%d is out of range for X %s"
            % (num_reduce_dim, list(shape)))
    split = num_reduce_dim if front else ndim - num_reduce_dim
    rows, cols = shape_product(shape[:split]), shape_product(shape[split:])
    kept = list(shape[split:]) if front else list(shape[:split])
    return rows, cols, kept


def _length_mask(lengths, rows, cols, front, device):
    """(rows, cols) bool mask of the elements each reduction takes: with `lengths`, reduction j
    takes its first lengths[j] elements (Caffe2's optional second input)."""
    if lengths is None:
        return None
    lengths = lengths.reshape(-1).to(device=device, dtype=torch.int64)
    enforce(lengths.numel() == (cols if front else rows),
            "lengths has %d entries, the reduction has %d outputs"
            % (lengths.numel(), cols if front else rows))
    if front:
        return torch.arange(rows, device=device).unsqueeze(1) < lengths.unsqueeze(0)
    return torch.arange(cols, device=device).unsqueeze(0) < lengths.unsqueeze(1)


def _reduce_front_back(X, lengths, num_reduce_dim, front, kind):
    rows, cols, kept = _front_back_2d(X.shape, num_reduce_dim, front)
    if lengths is None:
        dims = tuple(range(num_reduce_dim)) if front else tuple(range(X.dim() - num_reduce_dim,
                                                                      X.dim()))
        return _reduce(X, dims, False, kind)
    x2 = X.reshape(rows, cols)
    mask = _length_mask(lengths, rows, cols, front, X.device)
    dim = 0 if front else 1
    if kind in ("sum", "mean"):
        Y = torch.where(mask, x2, 0).sum(dim=dim)
        if kind == "mean":
            Y = Y / mask.sum(dim=dim).to(Y.dtype)
    else:
        fill = float("-inf") if kind == "max" else float("inf")
        masked = x2.masked_fill(~mask, fill)
        Y = _reduce(masked, (dim,), True, kind).squeeze(dim)
    return Y.reshape(kept)


def _register(kind):
    name = kind.capitalize()

    @operator("Reduce" + name)
    def reduce_axes(X, *, axes=None, keepdims=1):
        return _reduce(X, _axes(X, axes), keepdims, kind)

    @operator("ReduceFront" + name, grad_inputs=(0,))
    def reduce_front(X, lengths=None, *, num_reduce_dim=1):
        return _reduce_front_back(X, lengths, num_reduce_dim, True, kind)

    @operator("ReduceBack" + name, grad_inputs=(0,))
    def reduce_back(X, lengths=None, *, num_reduce_dim=1):
        return _reduce_front_back(X, lengths, num_reduce_dim, False, kind)

    reduce_axes.__doc__ = "%s over `axes` (all by default)." % name
    reduce_front.__doc__ = ("%s over the first num_reduce_dim dims (with `lengths`: of the "
                            "first lengths[j] rows of column j)." % name)
    reduce_back.__doc__ = ("%s over the last num_reduce_dim dims (with `lengths`: of the "
                           "first lengths[i] columns of row i)." % name)


def _register_front_back_gradients(kind, front):
    """Caffe2's written-out gradients. Sum/Mean: (dY, X or X's int64 shape[, lengths]) -> dX;
    Max/Min: (dY, X, Y[, lengths]) -> dX, dY in full to every element equal to its Y."""
    side = "Front" if front else "Back"
    name = "Reduce%s%sGradient" % (side, kind.capitalize())

    def spread(dY, shape, lengths, num_reduce_dim):
        rows, cols, _ = _front_back_2d(shape, num_reduce_dim, front)
        dy = dY.reshape((1, cols) if front else (rows, 1))
        dx = dy.expand(rows, cols)
        mask = _length_mask(lengths, rows, cols, front, dY.device)
        if kind == "mean":
            count = (mask.sum(dim=0 if front else 1, keepdim=True).to(dY.dtype)
                     if mask is not None else float(rows if front else cols))
            dx = dx / count
        if mask is not None:
            dx = torch.where(mask, dx, 0)
        return dx, mask, rows, cols

    if kind in ("sum", "mean"):
        @operator(name, grad_inputs=())
        def gradient(dY, X_or_shape, lengths=None, *, num_reduce_dim=1):
            # Caffe2 reads a 1-D int64 second input as the shape of X (older models pass it)
            if X_or_shape.dim() == 1 and X_or_shape.dtype == torch.int64:
                shape = [int(d) for d in X_or_shape.tolist()]
            else:
                shape = list(X_or_shape.shape)
            dx, _, _, _ = spread(dY, shape, lengths, num_reduce_dim)
            return dx.reshape(shape).contiguous()
    else:
        @operator(name, grad_inputs=())
        def gradient(dY, X, Y, lengths=None, *, num_reduce_dim=1):
            dx, mask, rows, cols = spread(dY, list(X.shape), lengths, num_reduce_dim)
            y = Y.reshape((1, cols) if front else (rows, 1))
            hit = X.reshape(rows, cols) == y
            return torch.where(hit, dx, 0).reshape(X.shape).contiguous()
    gradient.__name__ = name


for _kind in ("sum", "mean", "max", "min"):
    _register(_kind)
    _register_front_back_gradients(_kind, True)
    _register_front_back_gradients(_kind, False)


@operator("SumSqrElements")
def sum_sqr_elements(X, *, average=0):
    """The sum (average=1: the mean) of X's squared elements, a scalar; gradient clipping's norm."""
    squares = X * X
    return squares.mean() if average else squares.sum()
