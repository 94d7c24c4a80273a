"""ONNX export of a model's deploy form: one converter function per Caffe2 op type.

    to_onnx(model, path)        an ONNX model (opset >= 13) checked with onnx.checker
    verify_onnx(onnx, model)    onnx.reference's output against this project's executor

Converters are registered in the ONNX_EXPORT table (interop/converters.py), as ops are in the
op registry: `@ONNX_EXPORT.converter("Relu")` on `fn(w, op, args)`, where `w` is the
_OnnxWriter (it keeps Caffe2's in-place blob versions apart, ONNX being SSA) and `args` the
op's arguments. An op type without a converter is an ExportError naming the op, its position
and the closest supported types.
"""
import os

import numpy as np
import onnx
import torch
from onnx.reference import ReferenceEvaluator

from food101.caffe2.errors import Caffe2Error
from food101.caffe2.ops.registry import lookup, parse_arguments
from food101.caffe2.utils import ArgsToDict
from food101.fileio import write_bytes
from food101.interop.converters import ConverterTable, UnknownConverterError
from food101.interop.deploy import ExportError, InferenceForm
from food101.zoo import _nets

ONNX_EXPORT = ConverterTable("to_onnx", target="ONNX")


def to_onnx(model, path, weights=None, input_shape=None, opset=None, dynamic_batch=True, check=True):
    """Write an ONNX model of the deploy net; returns the onnx.ModelProto (checked).

    opset: >= 13. The default is 13, or 15 when the net has SpatialBN: BatchNormalization before
    opset 14 carries a training-era `momentum` attribute that some consumers (onnx's own
    reference evaluator among them) misread as training mode; opset 14 made it explicit.
    input_shape: the shape written into the graph (default value_info's); with dynamic_batch the
    batch dimension is the symbol "N"."""
    deployed = InferenceForm(model, weights)
    if opset is None:
        opset = 15 if any(op.type == "SpatialBN" for op in deployed.predict_net.op) else 13
    if opset < 13:
        raise ExportError("to_onnx: opset %d < 13 is not supported (Softmax and pooling semantics "
                          "are written for opset 13 and later)" % opset)
    shape = tuple(input_shape or deployed.input_shape)
    proto = _OnnxWriter(deployed, shape, opset, dynamic_batch).run()
    if check:
        onnx.checker.check_model(proto, full_check=True)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    write_bytes(path, proto.SerializeToString())  # what onnx.save writes for a model < 2 GB
    return proto


def verify_onnx(onnx_model, model, weights=None, inputs=None, tol=1e-4, seed=0):
    """Run the ONNX file with onnx.reference.ReferenceEvaluator and the deploy net with this
    project's executor on the same input; returns the largest absolute difference and raises
    ExportError above `tol`. inputs: an array (default: one seeded random image at the
    model's input size)."""
    deployed = InferenceForm(model, weights)
    proto = onnx_model if isinstance(onnx_model, onnx.ModelProto) else onnx.load(onnx_model)
    if inputs is None:
        shape = (1,) + tuple(deployed.input_shape[1:])
        inputs = (np.random.RandomState(seed).rand(*shape).astype(np.float32) - 0.5) * 100
    inputs = np.ascontiguousarray(inputs, np.float32)
    ours = _nets.to_numpy(deployed.run(inputs)[deployed.output_name])
    (theirs,) = ReferenceEvaluator(proto).run(None, {proto.graph.input[0].name: inputs})
    if ours.shape != theirs.shape:
        raise ExportError("verify_onnx: shapes differ: ours %s, ONNX %s" % (ours.shape, theirs.shape))
    diff = float(np.abs(ours - theirs).max())
    if not diff <= tol:
        raise ExportError("verify_onnx: outputs differ by %.3g (> %g) on a %s input" % (
            diff, tol, list(inputs.shape)))
    return diff


# Caffe2 TensorProto.DataType -> ONNX TensorProto.DataType (both enums name the same types).
_ONNX_TYPES = {1: 1, 2: 6, 3: 2, 5: 9, 6: 2, 7: 3, 8: 4, 9: 5, 10: 7, 12: 10, 13: 11}


class _OnnxWriter:
    """Caffe2 predict net -> ONNX nodes; the converters in ONNX_EXPORT (below) call its
    helpers (input, output, node, const, tmp) to emit nodes in SSA form."""

    def __init__(self, deployed, input_shape, opset, dynamic_batch):
        self.onnx = onnx
        self.helper = onnx.helper
        self.model = deployed
        self.values = deployed.values
        self.input_shape = input_shape
        self.opset = opset
        self.dynamic_batch = dynamic_batch
        self.nodes = []
        self.initializers = {}
        self.current = {}
        self.written = {}
        self.counter = 0

    def run(self):
        net = self.model.predict_net
        try:
            blobs = self.model.run(np.zeros(self.input_shape, np.float32))
        except Caffe2Error as e:
            raise ExportError("to_onnx: the deploy net does not run on a %s input: %s"
                              % (list(self.input_shape), e)) from None
        self.shapes = {k: tuple(v.shape) for k, v in blobs.items() if isinstance(v, torch.Tensor)}
        self.consumed = {i for op in net.op for i in op.input} | {self.model.output_name}
        self.writes = {}
        for op in net.op:
            for blob in op.output:
                self.writes[blob] = self.writes.get(blob, 0) + 1
        for index, op in enumerate(net.op):
            where = "op #%d %s (%s -> %s)" % (index, op.type, list(op.input), list(op.output))
            try:
                convert = ONNX_EXPORT.lookup(op.type, where)
            except UnknownConverterError as e:
                raise ExportError(str(e)) from None
            convert(self, op, ArgsToDict(op.arg))
        return self._model()

    def _model(self):
        helper, TP = self.helper, self.onnx.TensorProto
        batch = "N" if self.dynamic_batch else self.input_shape[0]
        x = self.model.input_name
        out = self.model.output_name
        final = self.name(out)
        if final != out:  # the output's last write was an alias (e.g. a trailing Dropout)
            self.nodes.append(helper.make_node("Identity", [final], [out]))
        out_shape = list(self.shapes[out])
        inputs = [helper.make_tensor_value_info(x, TP.FLOAT, [batch] + list(self.input_shape[1:]))]
        outputs = [helper.make_tensor_value_info(out, TP.FLOAT, [batch] + out_shape[1:])]
        graph = helper.make_graph(self.nodes, self.model.name, inputs, outputs,
                                  list(self.initializers.values()))
        opsets = [helper.make_opsetid("", self.opset)]
        proto = helper.make_model(graph, opset_imports=opsets, producer_name="food101",
                                  doc_string="exported from a Caffe2 NetDef by food101.interop.export.to_onnx")
        try:  # the lowest IR version that carries this opset: readable by older runtimes
            proto.ir_version = helper.find_min_ir_version_for(opsets)
        except (AttributeError, ValueError):
            pass
        return proto

    # ------------------------------------------------------------------ helpers
    def name(self, blob):
        """The ONNX value holding the current version of Caffe2 blob `blob`."""
        return self.current.get(blob, blob)

    def input(self, blob):
        name = self.name(blob)
        if blob in self.values and blob not in self.initializers:
            self.initializers[blob] = self.onnx.numpy_helper.from_array(
                np.ascontiguousarray(self.values[blob]), blob)
        return name

    def output(self, op, position=0):
        """A fresh ONNX name for an op output: ONNX is SSA, Caffe2 writes blobs in place
        (Relu conv1 -> conv1). The last write of a blob keeps the blob's own name."""
        blob = op.output[position]
        self.written[blob] = self.written.get(blob, 0) + 1
        name = blob if self.written[blob] == self.writes[blob] else "%s__v%d" % (blob, self.written[blob])
        self.current[blob] = name
        return name

    def const(self, hint, array):
        self.counter += 1
        name = "%s__const%d" % (hint, self.counter)
        self.initializers[name] = self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name)
        return name

    def tmp(self, hint):
        self.counter += 1
        return "%s__tmp%d" % (hint, self.counter)

    def node(self, op_type, inputs, outputs, op=None, **attrs):
        self.nodes.append(self.helper.make_node(op_type, inputs, outputs,
                                                name=self.tmp(op.output[0]) if op is not None else None,
                                                **attrs))

    def nchw(self, op, a):
        if a.get("order", "NCHW") != "NCHW":
            raise ExportError("to_onnx: %s %r uses order %s; only NCHW exports" % (
                op.type, op.output[0], a["order"]))

    def no_extra_outputs(self, op):
        for extra in op.output[1:]:
            if extra in self.consumed:
                raise ExportError("to_onnx: %s output %r is used later; it has no ONNX equivalent"
                                  % (op.type, extra))


# ---------------------------------------------------------------------- converters (ONNX_EXPORT)
@ONNX_EXPORT.converter("Conv")
def _conv(w, op, a):
    w.nchw(op, a)
    geometry = _window(op)
    w.node("Conv", [w.input(i) for i in op.input], [w.output(op)], op,
               kernel_shape=geometry["kernel"], strides=geometry["stride"], pads=geometry["pads"],
               dilations=geometry["dilation"], group=int(a.get("group", 1)))


def _pool(w, op, a, onnx_type):
    w.nchw(op, a)
    x = w.input(op.input[0])
    if a.get("global_pooling", 0):
        w.node("Global" + onnx_type, [x], [w.output(op)], op)
        return
    geometry = _window(op)
    attrs = dict(kernel_shape=geometry["kernel"], strides=geometry["stride"], pads=geometry["pads"])
    legacy = a.get("legacy_pad", 0)
    if legacy == 3:
        attrs["ceil_mode"] = 1
        if onnx_type == "AveragePool" and any(geometry["pads"]):
            raise ExportError("to_onnx: AveragePool %r: Caffe legacy pooling with padding divides "
                              "by a window ONNX cannot express" % op.output[0])
    elif legacy:
        raise ExportError("to_onnx: %s %r: legacy_pad=%d is not supported" % (op.type, op.output[0],
                                                                            legacy))
    if onnx_type == "AveragePool" and a.get("count_include_pad", 0):
        attrs["count_include_pad"] = 1
    expected = _onnx_pool_shape(w.shapes[op.input[0]], geometry, bool(attrs.get("ceil_mode")))
    if tuple(expected) != tuple(w.shapes[op.output[0]][2:]):
        raise ExportError("to_onnx: %s %r: Caffe2 output %s differs from ONNX's %s for these "
                          "pooling arguments" % (op.type, op.output[0],
                                                 list(w.shapes[op.output[0]][2:]), expected))
    w.node(onnx_type, [x], [w.output(op)], op, **attrs)


@ONNX_EXPORT.converter("MaxPool")
def _max_pool(w, op, a):
    _pool(w, op, a, "MaxPool")


@ONNX_EXPORT.converter("AveragePool")
def _average_pool(w, op, a):
    _pool(w, op, a, "AveragePool")


@ONNX_EXPORT.converter("Relu")
def _relu(w, op, a):
    w.node("Relu", [w.input(op.input[0])], [w.output(op)], op)


@ONNX_EXPORT.converter("Sigmoid")
def _sigmoid(w, op, a):
    w.node("Sigmoid", [w.input(op.input[0])], [w.output(op)], op)


@ONNX_EXPORT.converter("Tanh")
def _tanh(w, op, a):
    w.node("Tanh", [w.input(op.input[0])], [w.output(op)], op)


@ONNX_EXPORT.converter("LeakyRelu")
def _leaky_relu(w, op, a):
    w.node("LeakyRelu", [w.input(op.input[0])], [w.output(op)], op, alpha=float(a.get("alpha", 0.01)))


@ONNX_EXPORT.converter("Concat")
def _concat(w, op, a):
    w.no_extra_outputs(op)
    if a.get("add_axis", 0):
        raise ExportError("to_onnx: Concat %r with add_axis=1 is not supported" % op.output[0])
    axis = a.get("axis", 3 if a.get("order", "NCHW") == "NHWC" else 1)
    w.node("Concat", [w.input(i) for i in op.input], [w.output(op)], op, axis=int(axis))


def _alias(w, op, a):
    """Ops that are the identity at inference: later readers use the input's value."""
    w.no_extra_outputs(op)
    w.current[op.output[0]] = w.input(op.input[0])


ONNX_EXPORT.converter("Dropout", "StopGradient")(_alias)


@ONNX_EXPORT.converter("Copy")
def _copy(w, op, a):
    w.node("Identity", [w.input(op.input[0])], [w.output(op)], op)


@ONNX_EXPORT.converter("Softmax")
def _softmax(w, op, a):
    x = w.input(op.input[0])
    shape = w.shapes[op.input[0]]
    axis = a.get("axis", 1)
    axis = axis + len(shape) if axis < 0 else axis
    if all(d == 1 for d in shape[axis + 1:]):  # one axis holds all of it: ONNX 13 Softmax agrees
        w.node("Softmax", [x], [w.output(op)], op, axis=axis)
        return
    # Caffe2 normalises over all dims from `axis` on: flatten, softmax, restore the shape.
    flat, soft, dims = w.tmp("flat"), w.tmp("soft"), w.tmp("shape")
    w.node("Shape", [x], [dims], op)
    w.node("Flatten", [x], [flat], op, axis=axis)
    w.node("Softmax", [flat], [soft], op, axis=1)
    w.node("Reshape", [soft, dims], [w.output(op)], op)


def _fc(w, op, a, trans_b):
    x = w.input(op.input[0])
    axis = a.get("axis", 1)
    if a.get("axis_w", 1) != 1:
        raise ExportError("to_onnx: %s %r with axis_w != 1 is not supported" % (op.type, op.output[0]))
    if len(w.shapes[op.input[0]]) != 2 or axis != 1:
        flat = w.tmp(op.output[0] + "_in")
        w.node("Flatten", [x], [flat], op, axis=axis)
        x = flat
    inputs = [x] + [w.input(i) for i in op.input[1:]]
    w.node("Gemm", inputs, [w.output(op)], op, transB=trans_b)


@ONNX_EXPORT.converter("FC")
def _fc_op(w, op, a):
    _fc(w, op, a, 1)


@ONNX_EXPORT.converter("FCTransposed")
def _fc_transposed(w, op, a):
    _fc(w, op, a, 0)


@ONNX_EXPORT.converter("SpatialBN")
def _spatial_bn(w, op, a):
    w.nchw(op, a)
    w.node("BatchNormalization", [w.input(i) for i in op.input[:5]], [w.output(op)], op,
               epsilon=float(a.get("epsilon", 1e-5)))


@ONNX_EXPORT.converter("LRN")
def _lrn(w, op, a):
    w.nchw(op, a)
    w.no_extra_outputs(op)
    w.node("LRN", [w.input(op.input[0])], [w.output(op)], op, size=int(a["size"]),
               alpha=float(a.get("alpha", 0)), beta=float(a.get("beta", 0)),
               bias=float(a.get("bias", 1.0)))


@ONNX_EXPORT.converter("Sum")
def _sum(w, op, a):
    w.node("Sum", [w.input(i) for i in op.input], [w.output(op)], op)


def _elementwise(w, op, a):
    x, y = w.input(op.input[0]), w.input(op.input[1])
    if a.get("broadcast", 0):
        rank_x, shape_y = len(w.shapes[op.input[0]]), w.shapes[op.input[1]]
        axis = a.get("axis", -1)
        if axis != -1:  # Caffe2 aligns B at `axis`; numpy aligns at the end: pad with 1s
            while len(shape_y) > 0 and shape_y[-1] == 1:  # Caffe2 ignores B's trailing 1s
                shape_y = shape_y[:-1]
            target = tuple(shape_y) + (1,) * (rank_x - axis - len(shape_y))
            if target != tuple(w.shapes[op.input[1]]):
                if op.input[1] in w.values:
                    y = w.const(op.input[1], w.values[op.input[1]].reshape(target))
                else:
                    shaped = w.tmp(op.input[1])
                    w.node("Reshape", [y, w.const("shape", np.array(target, np.int64))],
                               [shaped], op)
                    y = shaped
    w.node(op.type, [x, y], [w.output(op)], op)


ONNX_EXPORT.converter("Add", "Sub", "Mul", "Div")(_elementwise)


@ONNX_EXPORT.converter("Flatten")
def _flatten(w, op, a):
    w.node("Flatten", [w.input(op.input[0])], [w.output(op)], op, axis=int(a.get("axis", 1)))


@ONNX_EXPORT.converter("Reshape")
def _reshape(w, op, a):
    w.no_extra_outputs(op)
    if len(op.input) > 1:  # the shape is a blob (int64, as Caffe2's Shape op makes it)
        shape = w.input(op.input[1])
    else:
        shape = w.const("shape", np.array(a["shape"], np.int64))
    w.node("Reshape", [w.input(op.input[0]), shape], [w.output(op)], op)


@ONNX_EXPORT.converter("Shape")
def _shape(w, op, a):
    if a.get("axes"):
        raise ExportError("to_onnx: Shape %r with axes is not supported" % op.output[0])
    w.node("Shape", [w.input(op.input[0])], [w.output(op)], op)


@ONNX_EXPORT.converter("Transpose")
def _transpose(w, op, a):
    perm = a.get("axes") or list(reversed(range(len(w.shapes[op.input[0]]))))
    w.node("Transpose", [w.input(op.input[0])], [w.output(op)], op, perm=list(perm))


@ONNX_EXPORT.converter("Cast")
def _cast(w, op, a):
    to = a.get("to", 1)
    if to not in _ONNX_TYPES:
        raise ExportError("to_onnx: Cast %r to Caffe2 type %r has no ONNX type" % (op.output[0], to))
    w.node("Cast", [w.input(op.input[0])], [w.output(op)], op, to=_ONNX_TYPES[to])


@ONNX_EXPORT.converter("Scale")
def _scale(w, op, a):
    factor = w.const("scale", np.array(a.get("scale", 1.0), np.float32))
    w.node("Mul", [w.input(op.input[0]), factor], [w.output(op)], op)


def _window(op):
    """Kernel, stride, dilation (one per spatial dim) and ONNX pads (heads then tails, which
    is Caffe2's `pads` order) of a Conv/pool op, parsed as the runtime parses them."""
    try:
        window = parse_arguments(lookup(op.type), op)
    except Caffe2Error as e:
        raise ExportError("to_onnx: %s %r: %s" % (op.type, op.output[0], e)) from None
    return dict(kernel=list(window["kernels"]), stride=list(window["strides"]),
                pads=list(window["pads"]), dilation=list(window["dilations"]))


def _onnx_pool_shape(in_shape, geometry, ceil_mode):
    out = []
    for i, size in enumerate(in_shape[2:]):
        span = size + geometry["pads"][i] + geometry["pads"][i + 2] - geometry["kernel"][i]
        stride = geometry["stride"][i]
        out.append((-(-span // stride) if ceil_mode else span // stride) + 1)
    return out
