"""More of Caffe2's elementwise ops: unary math (Softsign, Cos, Sin, Cbrt, Rsqrt, ...),
activations (ReluN, Gelu, Swish, HardSigmoid, Softplus), comparisons and logic (EQ, LT, ...,
And, Or, Not) with Caffe2's broadcasting, and SumReduceLike."""
import torch

from food101.caffe2.errors import enforce
from food101.caffe2.ops.elementwise import _operands
from food101.caffe2.ops.reduce import _axes as _reduce_axes
from food101.caffe2.ops.registry import operator


def _unary(op_type, fn, **kw):
    operator(op_type, **kw)(fn)


_unary("Softsign", lambda X: X / (1 + X.abs()))
_unary("Cos", lambda X: torch.cos(X))
_unary("Sin", lambda X: torch.sin(X))
_unary("Tan", lambda X: torch.tan(X))
_unary("Atan", lambda X: torch.atan(X))
_unary("Acos", lambda X: torch.acos(X))
_unary("Asin", lambda X: torch.asin(X))
_unary("Sinh", lambda X: torch.sinh(X))
_unary("Cosh", lambda X: torch.cosh(X))
_unary("Erf", lambda X: torch.erf(X))
_unary("Cbrt", lambda X: torch.sign(X) * X.abs().pow(1.0 / 3.0))
_unary("Rsqrt", lambda X: torch.rsqrt(X))
_unary("Cube", lambda X: X * X * X)
_unary("Reciprocal", lambda X: 1.0 / X)
_unary("Sign", lambda X: torch.sign(X), grad_inputs=())
_unary("Floor", lambda X: torch.floor(X), grad_inputs=())
_unary("Ceil", lambda X: torch.ceil(X), grad_inputs=())
_unary("Not", lambda X: torch.logical_not(X), grad_inputs=())


@operator("ReluN")
def relu_n(X, *, n=6.0):
    enforce(n > 0, "ReluN: n=%g must be positive" % n)
    return X.clamp(0, n)


@operator("Gelu")
def gelu(X, *, fast_gelu=0):
    return torch.nn.functional.gelu(X, approximate="tanh" if fast_gelu else "none")


@operator("Swish")
def swish(X):
    return X * torch.sigmoid(X)


@operator("HardSigmoid")
def hard_sigmoid(X, *, alpha=0.2, beta=0.5):
    return (alpha * X + beta).clamp(0, 1)


@operator("Softplus")
def softplus(X):
    return torch.nn.functional.softplus(X)


@operator("Selu")
def selu(X, *, alpha=1.6732632423543772, scale=1.0507009873554805):
    return scale * torch.where(X > 0, X, alpha * (torch.exp(X) - 1))


@operator("ThresholdedRelu")
def thresholded_relu(X, *, alpha=1.0):
    return torch.where(X > alpha, X, torch.zeros_like(X))


def _compare(op_type, fn):
    @operator(op_type, grad_inputs=())
    def compare(A, B, *, broadcast=0, axis=-1, axis_str="", order="NCHW"):
        A, B = _operands(A, B, broadcast, axis, axis_str, order)
        return fn(A, B)
    compare.__name__ = op_type


for _name, _fn in [("EQ", torch.eq), ("NE", torch.ne), ("LT", torch.lt), ("LE", torch.le),
                   ("GT", torch.gt), ("GE", torch.ge), ("And", torch.logical_and),
                   ("Or", torch.logical_or), ("Xor", torch.logical_xor),
                   # on integer and bool tensors, with the same broadcasting
                   ("BitwiseAnd", torch.bitwise_and), ("BitwiseOr", torch.bitwise_or),
                   ("BitwiseXor", torch.bitwise_xor)]:
    _compare(_name, _fn)


@operator("SumReduceLike", grad_inputs=(0,))
def sum_reduce_like(A, B, *, axis=-1, axis_str="", order="NCHW"):
    """A summed down to B's shape: B's dims match A's from `axis` (-1: trailing)."""
    if axis_str:
        axis = order.index(axis_str)
    if B.dim() == 0 or B.numel() == 1 and B.dim() <= 1:
        return A.sum().reshape(B.shape)
    if axis == -1:
        axis = A.dim() - B.dim()
    enforce(0 <= axis <= A.dim() - B.dim(), "SumReduceLike: axis=%d out of range for A %s, B %s"
            % (axis, list(A.shape), list(B.shape)))
    dims = list(range(axis)) + list(range(axis + B.dim(), A.dim()))
    result = A.sum(dim=dims) if dims else A
    for i, size in enumerate(B.shape):
        if size == 1 and result.shape[i] != 1:
            result = result.sum(dim=i, keepdim=True)
    return result.reshape(B.shape)



@operator("ReduceL1")
def reduce_l1(X, *, axes=None, keepdims=1):
    dims = _reduce_axes(X, axes)
    return X.abs().sum(dim=dims, keepdim=bool(keepdims)) if dims else X.abs()


@operator("ReduceL2")
def reduce_l2(X, *, axes=None, keepdims=1):
    dims = _reduce_axes(X, axes)
    return X.pow(2).sum(dim=dims, keepdim=bool(keepdims)).sqrt() if dims else X.abs()
