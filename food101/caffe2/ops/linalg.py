"""MatMul (what brew.mat_mul builds) and Free (what utils.ResetBlobs runs)."""
import math

import torch

from food101.caffe2.errors import enforce
from food101.caffe2.ops.registry import operator


def _as_matrix(X, axis, name):
    enforce(0 < axis <= X.dim() or X.dim() == 0, "MatMul: axis_%s=%d is outside the %d-D input",
            name, axis, X.dim())
    rows = math.prod(X.shape[:axis])
    return X.reshape(rows, -1)


@operator("MatMul")
def mat_mul(A, B, *, axis_a=1, axis_b=1, trans_a=0, trans_b=0):
    """Y = op(A) @ op(B) with A, B flattened to matrices at axis_a / axis_b (op: transpose
    when trans_*); the result is 2-D, as Caffe2's MatMul."""
    a, b = _as_matrix(A, axis_a, "a"), _as_matrix(B, axis_b, "b")
    a = a.t() if trans_a else a
    b = b.t() if trans_b else b
    enforce(a.shape[1] == b.shape[0], "MatMul: inner dimensions differ: %s x %s (A %s, B %s, "
            "trans_a=%d, trans_b=%d)", list(a.shape), list(b.shape), list(A.shape),
            list(B.shape), trans_a, trans_b)
    return a @ b


@operator("Free", grad_inputs=())
def free(*blobs):
    """Release the blobs' memory: each output (in place on its input) becomes an empty tensor."""
    return tuple(torch.empty(0, dtype=b.dtype, device=b.device) if isinstance(b, torch.Tensor)
                 else torch.empty(0) for b in blobs)
