"""Caffe2's per-op gradient definitions: which gradient OperatorDefs an op gets.

`core.GradientRegistry` (Caffe2's API for code that asks for per-op gradient ops: gradient
checkers, hand-built backward nets) reads this table. Each entry mirrors the gradient maker of
the torch 1.4.0 C++ library: the gradient op's type, its inputs and outputs, with the forward
op's arguments, engine and device option copied, as Caffe2 does. The ops themselves are
registered in ops/gradient_ops.py. Nets built with `Net.AddGradientOperators` do not use this
table: their backward pass is one AutogradGradient op (see executor.py).

Spec tokens: "I3" forward input 3, "O1" forward output 1, "GO0" the gradient of output 0,
"GI2" the gradient of input 2 (`<input>_grad`), "I*"/"GI*"/"GO*" all of them.
An op without an entry gets the project's generic `AutogradOpGradient` op (see
ops/gradient_ops.py): same blob names, one op, torch autograd of the forward op.
"""
from food101.caffe2.errors import Caffe2Error
from food101.caffe2.ops import registry
from food101.caffe2.proto import caffe2_pb2

GENERIC_GRADIENT_OP = "AutogradOpGradient"


class GradientNotDefined(Caffe2Error):
    pass


def _simple(grad_type, inputs, outputs, copy_args=True):
    return lambda op: [(grad_type, inputs, outputs, copy_args, {})]


def _unary_y(grad_type):
    return _simple(grad_type, ["O0", "GO0"], ["GI0"])


def _unary_x(grad_type):
    return _simple(grad_type, ["I0", "GO0"], ["GI0"])


def _conv_like(grad_type):
    def maker(op):
        if len(op.input) == 3:
            return [(grad_type, ["I0", "I1", "GO0"], ["GI1", "GI2", "GI0"], True, {})]
        return [(grad_type, ["I0", "I1", "GO0"], ["GI1", "GI0"], True, {"no_bias": 1})]
    return maker


def _fc_like(grad_type):
    return _simple(grad_type, ["I0", "I1", "GO0"], ["GI1", "GI2", "GI0"])


def _spatial_bn(op):
    is_test = any(a.name == "is_test" and a.i for a in op.arg)
    num_batches = [a.i for a in op.arg if a.name == "num_batches"]
    stats = ["I3", "I4"] if is_test else ["O3", "O4"]
    # training over several batches: the summed scale/bias gradients come back in (Caffe2)
    sums = ["GI1", "GI2"] if not is_test and num_batches and num_batches[0] > 1 else []
    return [("SpatialBNGradient", ["I0", "I1", "GO0"] + stats + sums, ["GI0", "GI1", "GI2"],
             True, {})]


def _dropout(op):
    is_test = any(a.name == "is_test" and a.i for a in op.arg)
    inputs = ["GO0"] if is_test else ["GO0", "O1"]
    return [("DropoutGrad", inputs, ["GI0"], True, {})]


def _softmax_loss(grad_type):
    def maker(op):
        return [(grad_type, ["I%d" % i for i in range(len(op.input))] + ["O0", "GO1"], ["GI0"],
                 True, {})]
    return maker


def _reduce_xy(grad_type):
    return _simple(grad_type, ["GO0", "I0", "O0"], ["GI0"])


def _reduce_front_back(grad_type, with_y):
    def maker(op):
        inputs = ["GO0", "I0"] + (["O0"] if with_y else []) + (["I1"] if len(op.input) > 1 else [])
        return [(grad_type, inputs, ["GI0"], True, {})]
    return maker


def _transpose(op):
    axes = [list(a.ints) for a in op.arg if a.name == "axes"]
    if not axes:
        return [("Transpose", ["GO0"], ["GI0"], True, {})]
    inverse = sorted(range(len(axes[0])), key=lambda i: axes[0][i])
    return [("Transpose", ["GO0"], ["GI0"], True, {"axes": inverse})]


def _weighted_sum(op):
    grad_on_w = any(a.name == "grad_on_w" and a.i for a in op.arg)
    outputs = ["GI%d" % i for i in range(0, len(op.input), 2)]
    if grad_on_w:
        outputs += ["GI%d" % i for i in range(1, len(op.input), 2)]
    return [("WeightedSumGradient", ["GO0", "I*"], outputs, True, {})]


def _pow(op):
    exponent = [a.f for a in op.arg if a.name == "exponent"]
    if len(op.input) == 1 and exponent:
        return [("Pow", ["I0"], ["GI0"], False, {"exponent": exponent[0] - 1.0}),
                ("Mul", ["GI0", "GO0"], ["GI0"], False, {}),
                ("Scale", ["GI0"], ["GI0"], False, {"scale": exponent[0]})]
    if len(op.input) == 2:
        return _pow_two_inputs(op)
    return None  # the generic gradient


def _cast(op):
    """Cast back: the gradient is cast from `to` to `from_type`, which Caffe2 requires."""
    args = {a.name: a for a in op.arg}
    if "from_type" not in args or not (args["from_type"].HasField("i")
                                       or args["from_type"].HasField("s")):
        raise GradientNotDefined("Argument 'from_type' of type int or string is required to "
                                 "get the gradient of CastOp")

    def enum(arg):
        if arg.HasField("i"):
            return arg.i
        return getattr(caffe2_pb2.TensorProto, arg.s.decode().upper())
    return [("Cast", ["GO0"], ["GI0"], False,
             {"to": enum(args["from_type"]), "from_type": enum(args["to"])})]


def _pow_two_inputs(op):
    """Caffe2's maker for Pow(X, Y) = Z: dX = Y * X^(Y - 1) * dZ, dY = log(X) * Z * dZ,
    with the legacy broadcast arguments spelled out and dY summed back to Y's shape."""
    args = {a.name: a for a in op.arg}
    broadcast = "broadcast" in args and args["broadcast"].i
    bcast = {}
    if broadcast:
        bcast = {"broadcast": 1, "axis": args["axis"].i if "axis" in args else -1,
                 "axis_str": args["axis_str"].s.decode() if "axis_str" in args else "",
                 "order": args["order"].s.decode() if "order" in args else "NCHW"}
    pre_reduce = op.input[1] + "_grad_autogen_pre_red"
    ops = [("ConstantFill", ["I1"], ["GI1"], False, {"value": 1.0}),
           ("Sub", ["I1", "GI1"], ["GI1"], False, {}),
           ("Pow", ["I0", "GI1"], ["GI0"], False, bcast),
           ("Mul", ["GI0", "GO0"], ["GI0"], False, {}),
           ("Mul", ["GI0", "I1"], ["GI0"], False, bcast),
           ("Log", ["I0"], [pre_reduce], False, {}),
           ("Mul", [pre_reduce, "O0"], [pre_reduce], False, {})]
    if broadcast:
        reduce_args = {k: v for k, v in bcast.items() if k != "broadcast"}
        ops += [("Mul", [pre_reduce, "GO0"], [pre_reduce], False, {}),
                ("SumReduceLike", [pre_reduce, "I1"], ["GI1"], False, reduce_args)]
    else:
        ops += [("Mul", [pre_reduce, "GO0"], ["GI1"], False, {})]
    return ops


def _python(op):
    """PythonGradient: (inputs, outputs, grads of the chosen outputs) -> chosen input grads."""
    args = {a.name: list(a.ints) for a in op.arg if a.name in ("grad_output_indices",
                                                               "grad_input_indices")}
    outs = args.get("grad_output_indices") or range(len(op.output))
    ins = args.get("grad_input_indices") or range(len(op.input))
    inputs = ["I%d" % i for i in range(len(op.input))] + ["O%d" % i for i in range(len(op.output))]
    return [("PythonGradient", inputs + ["GO%d" % i for i in outs], ["GI%d" % i for i in ins],
             True, {})]


# Caffe2's gradient makers (torch 1.4.0), by forward op type.
MAKERS = {
    "Python": _python,
    "Cast": _cast,
    "Relu": _unary_y("ReluGradient"), "Sigmoid": _unary_y("SigmoidGradient"),
    "Tanh": _unary_y("TanhGradient"), "Elu": _unary_y("EluGradient"),
    "LeakyRelu": _unary_y("LeakyReluGradient"), "ReluN": _unary_y("ReluNGradient"),
    "Clip": _unary_y("ClipGradient"), "Softmax": _unary_y("SoftmaxGradient"),
    "Softplus": _unary_y("SoftplusGradient"), "Selu": _unary_y("SeluGradient"),
    "Reciprocal": _unary_y("ReciprocalGradient"), "HardSigmoid": _unary_y("HardSigmoidGradient"),
    "ThresholdedRelu": _unary_y("ThresholdedReluGradient"),
    "Softsign": _unary_x("SoftsignGradient"), "Cos": _unary_x("CosGradient"),
    "Sin": _unary_x("SinGradient"), "Abs": _unary_x("AbsGradient"),
    "Tan": _unary_x("TanGradient"), "Atan": _unary_x("AtanGradient"),
    "Acos": _unary_x("AcosGradient"), "Asin": _unary_x("AsinGradient"),
    "Erf": _unary_x("ErfGradient"),
    "Rsqrt": _simple("RsqrtGradient", ["GO0", "O0"], ["GI0"]),
    "Cbrt": _simple("CbrtGradient", ["GO0", "O0"], ["GI0"]),
    "Swish": _simple("SwishGradient", ["I0", "O0", "GO0"], ["GI0"]),
    "Cube": _simple("CubeGradient", ["GO0", "I0"], ["GI0"]),
    "Sinh": _simple("SinhGradient", ["GO0", "I0"], ["GI0"]),
    "Cosh": _simple("CoshGradient", ["GO0", "I0"], ["GI0"]),
    "Gelu": _simple("GeluGradient", ["GO0", "I0"], ["GI0"]),
    "Exp": _simple("Mul", ["O0", "GO0"], ["GI0"]),
    "Log": _simple("Div", ["GO0", "I0"], ["GI0"]),
    "Negative": _simple("Negative", ["GO0"], ["GI0"]),
    "Sqr": lambda op: [("Scale", ["GO0"], ["GO0"], True, {"scale": 2.0}),
                       ("Mul", ["GO0", "I0"], ["GI0"], True, {})],
    "Sqrt": lambda op: [("Scale", ["GO0"], ["GI0"], True, {"scale": 0.5}),
                        ("Div", ["GI0", "O0"], ["GI0"], True, {})],
    "Add": _simple("AddGradient", ["GO0", "I0", "I1"], ["GI0", "GI1"]),
    "Sub": _simple("SubGradient", ["GO0", "I0", "I1"], ["GI0", "GI1"]),
    "Mul": _simple("MulGradient", ["GO0", "I0", "I1"], ["GI0", "GI1"]),
    "Div": _simple("DivGradient", ["GO0", "I0", "I1", "O0"], ["GI0", "GI1"]),
    "Conv": _conv_like("ConvGradient"), "Conv1D": _conv_like("Conv1DGradient"),
    "Conv2D": _conv_like("Conv2DGradient"), "Conv3D": _conv_like("Conv3DGradient"),
    "ConvTranspose": _conv_like("ConvTransposeGradient"),
    "FC": _fc_like("FCGradient"), "FCTransposed": _fc_like("FCTransposedGradient"),
    "MaxPool": _simple("MaxPoolGradient", ["I0", "O0", "GO0"], ["GI0"]),
    "AveragePool": _simple("AveragePoolGradient", ["I0", "O0", "GO0"], ["GI0"]),
    "LpPool": _simple("LpPoolGradient", ["I0", "O0", "GO0"], ["GI0"]),
    "SpatialBN": _spatial_bn, "Dropout": _dropout,
    "SoftmaxWithLoss": _softmax_loss("SoftmaxWithLossGradient"),
    "SpatialSoftmaxWithLoss": _softmax_loss("SpatialSoftmaxWithLossGradient"),
    "LabelCrossEntropy": _simple("LabelCrossEntropyGradient", ["I0", "I1", "GO0"], ["GI0"]),
    "CrossEntropy": _simple("CrossEntropyGradient", ["I0", "I1", "GO0"], ["GI0"]),
    "SigmoidCrossEntropyWithLogits": _simple("SigmoidCrossEntropyWithLogitsGradient",
                                             ["GO0", "I0", "I1"], ["GI0"]),
    "AveragedLoss": _simple("AveragedLossGradient", ["I0", "GO0"], ["GI0"]),
    "SumElements": _simple("SumElementsGradient", ["I0", "GO0"], ["GI0"]),
    "SquaredL2Distance": _simple("SquaredL2DistanceGradient", ["I0", "I1", "GO0"], ["GI0", "GI1"]),
    "Concat": _simple("Split", ["GO0", "O1"], ["GI*"]),
    "DepthConcat": _simple("Split", ["GO0", "O1"], ["GI*"]),
    "Split": lambda op: [("Concat", ["GO*"], ["GI0", "_%s_grad_dims" % op.input[0]], True, {})],
    "SplitByLengths": lambda op: [("Concat", ["GO*"], ["GI0", "_%s_grad_dims" % op.input[0]],
                                   True, {})],
    "Reshape": lambda op: [("Reshape", ["GO0", "O1"], ["GI0", "_%s_grad_dims" % op.input[0]],
                            False, {})],
    "Flatten": _simple("ResizeLike", ["GO0", "I0"], ["GI0"]),
    "FlattenToVec": _simple("ResizeLike", ["GO0", "I0"], ["GI0"]),
    "Transpose": _transpose,
    "NCHW2NHWC": _simple("NHWC2NCHW", ["GO0"], ["GI0"]),
    "NHWC2NCHW": _simple("NCHW2NHWC", ["GO0"], ["GI0"]),
    "Scale": _simple("Scale", ["GO0"], ["GI0"]),
    "Copy": _simple("CopyOnDeviceLike", ["GO0", "I0"], ["GI0"]),
    "Squeeze": _simple("ExpandDims", ["GO0"], ["GI0"]),
    "ExpandDims": _simple("Squeeze", ["GO0"], ["GI0"]),
    "ReduceSum": _reduce_xy("ReduceSumGradient"), "ReduceMean": _reduce_xy("ReduceMeanGradient"),
    "ReduceMax": _reduce_xy("ReduceMaxGradient"), "ReduceMin": _reduce_xy("ReduceMinGradient"),
    "ReduceL1": _reduce_xy("ReduceL1Gradient"), "ReduceL2": _reduce_xy("ReduceL2Gradient"),
    "ReduceFrontSum": _reduce_front_back("ReduceFrontSumGradient", False),
    "ReduceBackSum": _reduce_front_back("ReduceBackSumGradient", False),
    "ReduceFrontMean": _reduce_front_back("ReduceFrontMeanGradient", False),
    "ReduceBackMean": _reduce_front_back("ReduceBackMeanGradient", False),
    "ReduceFrontMax": _reduce_front_back("ReduceFrontMaxGradient", True),
    "ReduceBackMax": _reduce_front_back("ReduceBackMaxGradient", True),
    "ReduceFrontMin": _reduce_front_back("ReduceFrontMinGradient", True),
    "ReduceBackMin": _reduce_front_back("ReduceBackMinGradient", True),
    "Slice": lambda op: [("SliceGradient", ["I*", "GO0"], ["GI0"], True, {})],
    "Mean": _simple("MeanGradient", ["GO0"], ["GI*"]),
    "Max": _simple("MaxGradient", ["O0", "GO0", "I*"], ["GI*"]),
    "Min": _simple("MinGradient", ["O0", "GO0", "I*"], ["GI*"]),
    "WeightedSum": _weighted_sum,
    "Pow": _pow,
    "PRelu": _simple("PReluGradient", ["O0", "GO0", "I0", "I1"], ["GI0", "GI1"]),
    "LRN": _simple("LRNGradient", ["I0", "O0", "GO0"], ["GI0"]),
    "NanCheck": _simple("NanCheck", ["GO0"], ["GI0"]),
}
# Gradients that are the output gradient itself (no op): Caffe2's Sum and Alias.
PASS_THROUGH = {"Sum", "Alias"}
# Ops whose inputs get no gradient, as in Caffe2 (a None per input, no op).
NO_GRADIENT = {"StopGradient", "EnsureCPUOutput", "Shape", "Iter", "AtomicIter", "Print",
               "Summarize", "LearningRate"}
# Ops Caffe2 refuses a gradient for (SHOULD_NOT_DO_GRADIENT, or no gradient registered) that
# the generic autograd gradient would otherwise cover: asking raises, as in Caffe2.
NOT_DIFFERENTIABLE = {"LengthsGather": "One should not call gradient for operator %s.",
                      "ResizeLike": "One should not call gradient for operator %s.",
                      "SumReduceLike": "No gradient registered for %s.",
                      "SumSqrElements": "No gradient registered for %s.",
                      "CopyOnDeviceLike": "No gradient registered for %s.",
                      "CopyFromCPUInput": "No gradient registered for %s."}


def _expand(spec, op, g_output, grad_names):
    names = []
    for token in spec:
        if token == "I*":
            names.extend(op.input)
        elif token == "GI*":
            names.extend(grad_names)
        elif token == "GO*":
            names.extend(g_output)
        elif token.startswith("GO"):
            index = int(token[2:])
            if index >= len(g_output) or g_output[index] is None:
                raise GradientNotDefined("%s: the gradient op needs the gradient of output #%d "
                                         "(%s), which was not given" % (op.type, index,
                                                                        op.output[index]))
            names.append(g_output[index])
        elif token.startswith("GI"):
            names.append(grad_names[int(token[2:])])
        elif token.startswith("I"):
            names.append(op.input[int(token[1:])])
        elif token.startswith("O"):
            names.append(op.output[int(token[1:])])
        else:
            names.append(token)
    return names


def _copy_common_fields(op, grad_op):
    """As Caffe2's C++ makers: the name always set (so protos compare equal to Caffe2's), the
    engine and device option when the forward op has them."""
    grad_op.name = ""
    if op.HasField("engine"):
        grad_op.engine = op.engine
    if op.HasField("device_option"):
        grad_op.device_option.CopyFrom(op.device_option)
    grad_op.is_gradient_op = True


def gradient_for_op(op, g_output, make_argument):
    """(gradient OperatorDefs, gradient blob name or None per input) for one forward op."""
    g_output = [None if g is None else str(g) for g in g_output]
    grad_names = [name + "_grad" for name in op.input]
    if op.type in PASS_THROUGH:
        return [], [g_output[0]] * len(op.input)
    if op.type in NO_GRADIENT:
        return [], [None] * len(op.input)
    if op.type in NOT_DIFFERENTIABLE:
        raise GradientNotDefined(NOT_DIFFERENTIABLE[op.type] % op.type)
    schema = registry.lookup(op.type)
    maker = MAKERS.get(op.type)
    specs = maker(op) if maker is not None else None
    if specs is None:
        return _generic(op, g_output, grad_names, schema, make_argument)
    grad_ops = []
    produced = set()
    for grad_type, inputs, outputs, copy_args, extra_args in specs:
        grad_op = caffe2_pb2.OperatorDef(type=grad_type)
        grad_op.input.extend(_expand(inputs, op, g_output, grad_names))
        out_names = _expand(outputs, op, g_output, grad_names)
        grad_op.output.extend(out_names)
        produced.update(out_names)
        if copy_args:
            grad_op.arg.extend(op.arg)
        for key, value in extra_args.items():
            existing = [a for a in grad_op.arg if a.name == key]
            for a in existing:
                grad_op.arg.remove(a)
            grad_op.arg.append(make_argument(key, value))
        _copy_common_fields(op, grad_op)
        grad_ops.append(grad_op)
    return grad_ops, [g if g in produced else None for g in grad_names]


def _generic(op, g_output, grad_names, schema, make_argument):
    """One AutogradOpGradient op: torch autograd of the forward op (the project's own op)."""
    positions = [i for i in range(len(op.input)) if schema.differentiable(i)]
    given = [i for i, g in enumerate(g_output) if g is not None]
    if not positions:
        return [], [None] * len(op.input)
    if not given:
        raise GradientNotDefined("%s: no output gradient given" % op.type)
    grad_op = caffe2_pb2.OperatorDef(type=GENERIC_GRADIENT_OP)
    grad_op.input.extend(list(op.input) + [g_output[i] for i in given])
    grad_op.output.extend(grad_names[i] for i in positions)
    grad_op.arg.extend([make_argument("forward_op", op.SerializeToString()),
                        make_argument("output_grads", given),
                        make_argument("input_grads", positions)])
    _copy_common_fields(op, grad_op)
    names = [None] * len(op.input)
    for i in positions:
        names[i] = grad_names[i]
    return [grad_op], names
