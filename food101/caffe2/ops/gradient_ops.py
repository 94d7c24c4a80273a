"""Caffe2's gradient operators (ReluGradient, ConvGradient, SpatialBNGradient, ...), registered
under Caffe2's names with Caffe2's inputs and outputs (see gradient_defs.py for which op gets
which). Most are torch autograd of the one forward op they belong to: the forward op runs on
the inputs the gradient op receives and `torch.autograd.grad` gives the input gradients, so they
equal the gradients the executor's AutogradGradient computes. Gradients Caffe2 defines from the
forward *output* alone (ReluGradient(Y, dY), SoftmaxGradient(Y, dY), ...) are written out, since
the forward input is not there to differentiate.
"""
import torch

from food101.caffe2.errors import enforce
from food101.caffe2.ops.common import canonical_axis, channel_axis, shape_product
from food101.caffe2.ops.elementwise import _operands
from food101.caffe2.ops.registry import lookup, operator, parse_arguments
from food101.caffe2.proto import caffe2_pb2


def _float(t):
    return isinstance(t, torch.Tensor) and t.is_floating_point()


def vjp(forward_type, ctx, inputs, wrt, output_grads, op_def=None):
    """Gradients of `forward_type` at `inputs` w.r.t. the inputs at positions `wrt`, given
    {output position: output gradient}. Non-float inputs get None."""
    schema = lookup(forward_type)
    kwargs = parse_arguments(schema, op_def if op_def is not None else ctx.op)
    if schema.context:
        kwargs["ctx"] = ctx
    xs = list(inputs)
    leaves = []
    for i in wrt:
        if _float(xs[i]):
            xs[i] = xs[i].detach().requires_grad_(True)
            leaves.append(xs[i])
    with torch.enable_grad():
        result = schema.fn(*xs, **kwargs)
    result = result if isinstance(result, tuple) else (result,)
    outs, seeds = [], []
    for position, grad in output_grads.items():
        out = result[position]
        if isinstance(out, torch.Tensor) and out.requires_grad:
            outs.append(out)
            seeds.append(torch.as_tensor(grad).to(out.dtype).reshape(out.shape))
    grads = iter(torch.autograd.grad(outs, leaves, seeds, allow_unused=True) if outs and leaves
                 else [None] * len(leaves))
    results = []
    for i in wrt:
        if _float(inputs[i]):
            g = next(grads)
            results.append(torch.zeros_like(inputs[i]) if g is None else g.detach())
        else:
            results.append(None)
    return results


def _register_vjp(grad_type, forward_type, arrange):
    """`arrange(inputs, ctx)` -> (forward inputs, wrt positions, {output: grad}, result order)."""
    @operator(grad_type, grad_inputs=(), context=True)
    def gradient(*inputs, ctx):
        fwd_inputs, wrt, output_grads, order = arrange(list(inputs), ctx)
        grads = vjp(forward_type, ctx, fwd_inputs, wrt, output_grads)
        by_position = dict(zip(wrt, grads))
        return tuple(by_position[i] for i in order)
    gradient.__name__ = grad_type
    return gradient


def _arg(ctx, name, default=None):
    for a in ctx.op.arg:
        if a.name == name:
            if a.HasField("f"):
                return a.f
            if a.HasField("i"):
                return a.i
            if a.HasField("s"):
                return a.s.decode()
            return list(a.ints) or list(a.floats)
    return default


# (X, dY) -> dX
for _fwd in ("Softsign", "Cos", "Sin", "Abs", "Tan", "Atan", "Acos", "Asin", "Erf",
             "AveragedLoss", "SumElements"):
    _register_vjp(_fwd + "Gradient", _fwd, lambda x, ctx: ([x[0]], [0], {0: x[1]}, [0]))
# (dY, X) -> dX
for _fwd in ("Sinh", "Cosh", "Gelu", "Cube"):
    _register_vjp(_fwd + "Gradient", _fwd, lambda x, ctx: ([x[1]], [0], {0: x[0]}, [0]))
# (X, Y, dY) -> dX
for _fwd in ("MaxPool", "AveragePool", "LpPool", "LRN", "MaxPool1D", "MaxPool2D", "MaxPool3D",
             "AveragePool1D", "AveragePool2D", "AveragePool3D"):
    _register_vjp(_fwd + "Gradient", _fwd, lambda x, ctx: ([x[0]], [0], {0: x[2]}, [0]))
# (dC, A, B[, C]) -> dA, dB, broadcasting reduced by autograd
for _fwd in ("Add", "Sub", "Mul"):
    _register_vjp(_fwd + "Gradient", _fwd, lambda x, ctx: ([x[1], x[2]], [0, 1], {0: x[0]}, [0, 1]))


def _sum_to(grad, shape):
    """A broadcast result's gradient summed back to an operand's shape."""
    extra = grad.dim() - len(shape)
    dims = list(range(extra)) + [extra + i for i, size in enumerate(shape)
                                 if size == 1 and grad.shape[extra + i] != 1]
    return (grad.sum(dim=dims, keepdim=True) if dims else grad).reshape(shape)


@operator("DivGradient", grad_inputs=())
def div_gradient(*inputs, broadcast=0, axis=-1, axis_str="", order="NCHW"):
    """(dC, A, B, C) -> (dA, dB), or Caffe2's legacy (B, C, dC): dA = dC / B, dB = -dC * C / B,
    each summed back to its operand's shape. A itself is not read (only its shape), so an
    in-place Div (C written over A) has the right gradient."""
    if len(inputs) == 3:
        B, C, dC = inputs
        a_shape = C.shape
    else:
        enforce(len(inputs) == 4, "DivGradient takes (dC, A, B, C) or (B, C, dC), got %d inputs"
                % len(inputs))
        dC, A, B, C = inputs
        a_shape = A.shape
    _, b = _operands(C, B, broadcast, axis, axis_str, order)
    dA = _sum_to(dC / b, a_shape)
    dB = _sum_to(-dC * C / b, b.shape).reshape(B.shape)
    return dA, dB


# (X, L, dY) -> dX
for _fwd in ("LabelCrossEntropy", "CrossEntropy"):
    _register_vjp(_fwd + "Gradient", _fwd, lambda x, ctx: ([x[0], x[1]], [0], {0: x[2]}, [0]))
_register_vjp("SigmoidCrossEntropyWithLogitsGradient", "SigmoidCrossEntropyWithLogits",
              lambda x, ctx: ([x[1], x[2]], [0], {0: x[0]}, [0]))
_register_vjp("SquaredL2DistanceGradient", "SquaredL2Distance",
              lambda x, ctx: ([x[0], x[1]], [0, 1], {0: x[2]}, [0, 1]))


def _softmax_loss_gradient(X, label, rest, scale, label_prob, spatial, axis, order):
    """Caffe2's SoftmaxWithLossGradient from the forward's P alone (no re-run of the forward):
    dX = (P - target) * w * scale * d_loss / sum(w); target is the one-hot label (or the label
    probabilities), w the weights (1 without), pixels labelled -1 (spatial) get no gradient."""
    weights, P, d_loss = (rest if len(rest) == 3 else (None,) + tuple(rest))
    if spatial:
        enforce(order == "NCHW" and X.dim() == 4, "spatial=1 needs an NCHW X of 4 dims, got %s %s"
                % (order, list(X.shape)))
        N, D, H, W = X.shape
        labels = label.reshape(N, H, W).long()
        valid = labels != -1
        w = valid.to(P.dtype)
        if weights is not None:
            w = w * weights.reshape(N, H, W).to(P.dtype)
        onehot = torch.zeros_like(P).scatter_(1, torch.where(valid, labels, 0)[:, None], 1.0)
        dX = (P - onehot) * w[:, None]
    else:
        axis = canonical_axis(axis, X.dim())
        rows = shape_product(X.shape[:axis])
        p = P.reshape(rows, -1)
        if label_prob:
            target = label.reshape(p.shape).to(p.dtype)
        else:
            target = torch.zeros_like(p).scatter_(1, label.reshape(rows, 1).long(), 1.0)
        w = (torch.ones(rows, dtype=p.dtype, device=p.device) if weights is None
             else weights.reshape(rows).to(p.dtype))
        dX = ((p - target) * w[:, None]).reshape(X.shape)
    total = w.sum()
    factor = torch.where(total > 0, scale * d_loss.reshape(()).to(P.dtype) / total,
                         torch.ones_like(total))
    return dX * factor


@operator("SoftmaxWithLossGradient", grad_inputs=())
def softmax_with_loss_gradient(X, label, *rest, scale=1.0, label_prob=0, spatial=0, axis=1,
                               order="NCHW"):
    """(X, label[, weights], P, d_loss) -> dX."""
    return _softmax_loss_gradient(X, label, rest, scale, label_prob, spatial, axis, order)


@operator("SpatialSoftmaxWithLossGradient", grad_inputs=())
def spatial_softmax_with_loss_gradient(X, label, *rest, scale=1.0, order="NCHW"):
    """(X, label[, weights], P, d_loss) -> dX."""
    return _softmax_loss_gradient(X, label, rest, scale, 0, 1, 1, order)


# (dY, X[, Y][, lengths]) -> dX
# (ReduceFront*/ReduceBack* gradients are written out in ops/reduce.py)
for _fwd, _with_y in [("ReduceSum", True), ("ReduceMean", True), ("ReduceMax", True),
                      ("ReduceMin", True), ("ReduceL1", True), ("ReduceL2", True)]:
    def _reduce_arrange(x, ctx, with_y=_with_y):
        rest = x[3:] if with_y else x[2:]
        return [x[1]] + rest, [0], {0: x[0]}, [0]
    _register_vjp(_fwd + "Gradient", _fwd, _reduce_arrange)
# (Y, dY, X1, ..., Xn) -> dX1..dXn: every input equal to the max gets dY in full, as Caffe2
for _fwd in ("Max", "Min"):
    _register_vjp(_fwd + "Gradient", _fwd,
                  lambda x, ctx: (x[2:], list(range(len(x) - 2)), {0: x[1]},
                                  list(range(len(x) - 2))))
# (X[, starts, ends], dY) -> dX
_register_vjp("SliceGradient", "Slice", lambda x, ctx: (x[:-1], [0], {0: x[-1]}, [0]))
# (Y, dY, X, slope) -> dX, dslope
_register_vjp("PReluGradient", "PRelu", lambda x, ctx: ([x[2], x[3]], [0, 1], {0: x[1]}, [0, 1]))


def _conv_like(grad_type, forward_type, bias_channels):
    @operator(grad_type, grad_inputs=(), context=True)
    def gradient(X, W, dY, *, ctx):
        no_bias = bool(_arg(ctx, "no_bias", 0))
        bias = torch.zeros(bias_channels(W, ctx), dtype=W.dtype, device=W.device)
        dX, dW, db = vjp(forward_type, ctx, [X, W, bias], [0, 1, 2], {0: dY})
        return (dW, dX) if no_bias else (dW, db, dX)
    gradient.__name__ = grad_type
    return gradient


for _fwd in ("Conv", "Conv1D", "Conv2D", "Conv3D"):
    _conv_like(_fwd + "Gradient", _fwd, lambda W, ctx: W.shape[0])
_conv_like("ConvTransposeGradient", "ConvTranspose",
           lambda W, ctx: W.shape[1 if _arg(ctx, "order", "NCHW") == "NCHW" else -1]
           * int(_arg(ctx, "group", 1)))
_conv_like("FCGradient", "FC", lambda W, ctx: W.shape[0])
_conv_like("FCTransposedGradient", "FCTransposed", lambda W, ctx: W.shape[1])


@operator("SpatialBNGradient", grad_inputs=(), context=True)
def spatial_bn_gradient(X, scale, dY, mean, var_or_inv_std, dscale_sum=None, dbias_sum=None, *,
                        ctx):
    """(X, scale, dY, saved mean, saved inverse std[, dscale_sum, dbias_sum]): SpatialBN's
    outputs 3 and 4 in training.
    As in Caffe2, the op always applies the batch-statistics formula: given is_test=1 its maker
    passes the running mean and variance, and Caffe2 reads the variance as an inverse std
    (real Caffe2's result, checked against its fixture). With `num_batches` > 1 the scale and
    bias gradients summed over the batches come in (inputs 5 and 6): dscale and dbias are their
    averages, and dX uses them with this batch's count, as Caffe2's kernel does."""
    order = _arg(ctx, "order", "NCHW")
    axis = channel_axis(X.dim(), order)
    shape = [1] * X.dim()
    shape[axis] = X.shape[axis]
    dims = [d for d in range(X.dim()) if d != axis]
    count = shape_product(X.shape) // X.shape[axis] if X.shape[axis] else 0
    if count == 0:
        zeros = torch.zeros(X.shape[axis], dtype=X.dtype, device=X.device)
        return torch.zeros_like(X), zeros, zeros.clone()
    inv_std = var_or_inv_std.reshape(shape)
    if dscale_sum is not None:
        num_batches = int(_arg(ctx, "num_batches", 1))
        dscale = dscale_sum.reshape(-1) / num_batches
        dbias = dbias_sum.reshape(-1) / num_batches
        alpha = scale.reshape(shape) * inv_std
        beta = -alpha * dscale.reshape(shape) * inv_std / count
        gamma = alpha * (mean.reshape(shape) * dscale.reshape(shape) * inv_std
                         - dbias.reshape(shape)) / count
        return alpha * dY + beta * X + gamma, dscale, dbias
    x_hat = (X - mean.reshape(shape)) * inv_std
    dbias = dY.sum(dim=dims)
    dscale = (dY * x_hat).sum(dim=dims)
    dX = scale.reshape(shape) * inv_std / count * (
        count * dY - dbias.reshape(shape) - x_hat * dscale.reshape(shape))
    return dX, dscale, dbias


@operator("DropoutGrad", grad_inputs=(), context=True)
def dropout_grad(dY, mask=None, *, ctx):
    if _arg(ctx, "is_test", 0):
        return dY.clone()
    enforce(mask is not None, "DropoutGrad in training mode needs the mask input")
    ratio = float(_arg(ctx, "ratio", 0.5))
    scale = 0.0 if ratio >= 1 else 1.0 / (1.0 - ratio)
    return dY * mask.to(dY.dtype) * scale


@operator("MeanGradient", grad_inputs=(), context=True)
def mean_gradient(dY, *, ctx):
    n = ctx.num_outputs
    return tuple(dY / n for _ in range(n))


@operator("WeightedSumGradient", grad_inputs=(), context=True)
def weighted_sum_gradient(dY, *xw, ctx):
    xs, ws = xw[0::2], xw[1::2]
    grads = [dY * w.reshape(()).to(dY.dtype) for w in ws]
    if _arg(ctx, "grad_on_w", 0):
        grads += [(dY * x).sum().reshape(1) for x in xs]
    return tuple(grads)


# Gradients from the forward output Y (Caffe2 keeps Y, not X).
def _from_output(grad_type, formula):
    @operator(grad_type, grad_inputs=(), context=True)
    def gradient(Y, dY, *, ctx):
        return formula(Y, dY, ctx)
    gradient.__name__ = grad_type
    return gradient


# (dY, Y) -> dX: Caffe2 passes the output gradient first for these
@operator("RsqrtGradient", grad_inputs=())
def rsqrt_gradient(dY, Y):
    return -0.5 * dY * Y * Y * Y


@operator("CbrtGradient", grad_inputs=())
def cbrt_gradient(dY, Y):
    return dY / (3.0 * Y * Y)


@operator("SwishGradient", grad_inputs=())
def swish_gradient(X, Y, dY):
    """(X, Y, dY) -> dX = dY * (Y + (1 - Y) * sigmoid(X))."""
    return dY * (Y + (1.0 - Y) * torch.sigmoid(X))


_from_output("ReluGradient", lambda Y, dY, ctx: dY * (Y > 0))
_from_output("SigmoidGradient", lambda Y, dY, ctx: dY * Y * (1 - Y))
_from_output("TanhGradient", lambda Y, dY, ctx: dY * (1 - Y * Y))
_from_output("EluGradient", lambda Y, dY, ctx: torch.where(
    Y > 0, dY, dY * (Y + float(_arg(ctx, "alpha", 1.0)))))
_from_output("LeakyReluGradient", lambda Y, dY, ctx: torch.where(
    Y > 0, dY, dY * float(_arg(ctx, "alpha", 0.01))))
_from_output("ReluNGradient", lambda Y, dY, ctx: dY * ((Y > 0) & (Y < float(_arg(ctx, "n", 6.0)))))
_from_output("ClipGradient", lambda Y, dY, ctx: dY * (
    (Y > float(_arg(ctx, "min", float("-inf")))) & (Y < float(_arg(ctx, "max", float("inf"))))))
_from_output("SoftplusGradient", lambda Y, dY, ctx: dY * (1 - torch.exp(-Y)))
_from_output("ReciprocalGradient", lambda Y, dY, ctx: -dY * Y * Y)
_from_output("HardSigmoidGradient", lambda Y, dY, ctx: dY * float(_arg(ctx, "alpha", 0.2))
             * ((Y > 0) & (Y < 1)))
_from_output("ThresholdedReluGradient", lambda Y, dY, ctx: dY * (Y > 0))
_from_output("SeluGradient", lambda Y, dY, ctx: torch.where(
    Y > 0, dY * float(_arg(ctx, "scale", 1.0507009873554805)),
    dY * (Y + float(_arg(ctx, "alpha", 1.6732632423543772))
          * float(_arg(ctx, "scale", 1.0507009873554805)))))


@operator("SoftmaxGradient", grad_inputs=(), context=True)
def softmax_gradient(Y, dY, *, ctx):
    """Caffe2 flattens Y to 2-D at `axis` (default 1): one softmax per row."""
    axis = int(_arg(ctx, "axis", 1))
    axis = axis + Y.dim() if axis < 0 else axis
    rows = shape_product(Y.shape[:axis])
    y = Y.reshape(rows, shape_product(Y.shape[axis:]))
    dy = dY.reshape(y.shape)
    dx = y * (dy - (dy * y).sum(dim=1, keepdim=True))
    return dx.reshape(Y.shape)


@operator("AutogradOpGradient", grad_inputs=(), context=True)
def autograd_op_gradient(*inputs, ctx, forward_op=b"", output_grads=(), input_grads=()):
    """The project's generic gradient op for forward ops without a Caffe2 gradient entry:
    inputs are the forward op's inputs then the given output gradients."""
    forward = caffe2_pb2.OperatorDef()
    forward.ParseFromString(forward_op if isinstance(forward_op, bytes) else forward_op.encode("utf-8"))
    n = len(forward.input)
    grads = vjp(forward.type, ctx, list(inputs[:n]), list(input_grads),
                dict(zip(output_grads, inputs[n:])), op_def=forward)
    return tuple(g if g is not None else torch.zeros(0) for g in grads)
