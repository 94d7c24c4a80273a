"""Import an ONNX CNN (e.g. the ONNX-zoo copy of the Caffe2 SqueezeNet) into Caffe2 NetDefs.

    ONNX graph ──constant folding (Constant, ConstantOfShape, any node whose inputs are all
                constant, evaluated with onnx.reference)──►  weights  ──► init net (GivenTensorFill)
               ──one small converter per node type──────────────────►  predict net (Caffe2 ops)

Blob names stay the ONNX value names. Node types map as follows: Conv, Relu/Sigmoid/Tanh/LeakyRelu,
MaxPool/AveragePool (ceil_mode=1 -> legacy_pad=3), GlobalAveragePool/GlobalMaxPool
(global_pooling=1), Concat, Dropout (is_test=1), Identity (an alias), Softmax (opset-aware),
Flatten, Reshape (constant shape), Transpose, Gemm/MatMul (-> FC / FCTransposed),
BatchNormalization (-> SpatialBN is_test=1), LRN, Add/Sub/Mul/Div (legacy broadcast for a constant
operand), Sum. Anything else is an error naming the node.
"""
import numpy as np

from food101.caffe2.proto import caffe2_pb2
from food101.caffe2.utils import given_fill, make_op
from food101.zoo.model import ZooError, ZooModel

_ELEMENTWISE = {"Add": "Add", "Sub": "Sub", "Mul": "Mul", "Div": "Div"}
_UNARY = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh"}


def from_onnx(source, input_shape=None, name=None):
    """An ONNX model (path, bytes or ModelProto) -> ZooModel with Caffe2 init and predict nets."""
    import onnx
    model = source if isinstance(source, onnx.ModelProto) else onnx.load(source)
    return _Importer(model, input_shape, name).run()


class _Importer:
    def __init__(self, model, input_shape, name):
        import onnx
        from onnx import numpy_helper
        self.model = model
        self.graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        self.consts = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.alias = {}
        self.ops = []
        self.used_consts = []
        self.input_shape = input_shape
        self.name = name or self.graph.name or "onnx_model"
        self.onnx = onnx

    # --------------------------------------------------------------------- driver
    def run(self):
        inputs = [i for i in self.graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise ZooError("ONNX model %r has %d non-constant inputs (%s); a zoo model takes one"
                           % (self.name, len(inputs), [i.name for i in inputs]))
        data = inputs[0]
        shape = self.input_shape or [d.dim_value if d.dim_value > 0 else 1
                                     for d in data.type.tensor_type.shape.dim]
        remaining = self._fold_constants()
        self.shapes = self._infer_shapes(remaining, data.name, shape)
        for node in remaining:
            convert = getattr(self, "_op_" + node.op_type, None)
            if convert is None:
                raise ZooError("ONNX node %r (%s) has no Caffe2 mapping; supported: %s" % (
                    node.name or node.output[0], node.op_type, ", ".join(sorted(
                        k[4:] for k in dir(self) if k.startswith("_op_")))))
            convert(node, _attrs(node))
        predict = caffe2_pb2.NetDef(name=self.name)
        predict.op.extend(self.ops)
        outputs = [self._name(o.name) for o in self.graph.output]
        predict.external_input.extend([data.name] + self.used_consts)
        predict.external_output.extend(outputs)
        init = caffe2_pb2.NetDef(name=self.name + "_init")
        for blob in self.used_consts:
            init.op.append(given_fill(blob, self.consts[blob]))
        init.external_output.extend(self.used_consts)
        return ZooModel(init, predict, data.name, shape, np.float32, output_name=outputs[0])

    def _fold_constants(self):
        """Evaluate every node whose inputs are all constants; return the others."""
        from onnx.reference import ReferenceEvaluator
        remaining = []
        for node in self.graph.node:
            if node.op_type == "Constant":
                (value,) = ReferenceEvaluator(node, opsets={"": self.opset}).run(None, {})
                self.consts[node.output[0]] = np.asarray(value)
            elif node.input and all(i in self.consts for i in node.input if i) and node.op_type != "Dropout":
                feeds = {i: self.consts[i] for i in node.input if i}
                values = ReferenceEvaluator(node, opsets={"": self.opset}).run(None, feeds)
                for out, value in zip(node.output, values):
                    self.consts[out] = np.asarray(value)
            else:
                remaining.append(node)
        return remaining

    def _infer_shapes(self, nodes, data_name, data_shape):
        """{value: shape} from ONNX shape inference on the folded graph."""
        helper, numpy_helper = self.onnx.helper, self.onnx.numpy_helper
        needed = {i for n in nodes for i in n.input if i in self.consts}
        graph = helper.make_graph(
            nodes, "folded",
            [helper.make_tensor_value_info(data_name, self.onnx.TensorProto.FLOAT, list(data_shape))],
            list(self.graph.output),
            [numpy_helper.from_array(self.consts[n], n) for n in sorted(needed)])
        folded = helper.make_model(graph, opset_imports=list(self.model.opset_import))
        folded.ir_version = self.model.ir_version
        try:
            inferred = self.onnx.shape_inference.infer_shapes(folded)
        except Exception:  # shapes only refine the lowering; a model without them still imports
            return {data_name: tuple(data_shape)}
        shapes = {data_name: tuple(data_shape)}
        for info in list(inferred.graph.value_info) + list(inferred.graph.output):
            dims = info.type.tensor_type.shape.dim
            if info.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
                shapes[info.name] = tuple(d.dim_value for d in dims)
        for key, value in self.consts.items():
            shapes.setdefault(key, value.shape)
        return shapes

    # --------------------------------------------------------------------- helpers
    def _name(self, value):
        while value in self.alias:
            value = self.alias[value]
        return value

    def _input(self, value):
        value = self._name(value)
        if value in self.consts and value not in self.used_consts:
            self.used_consts.append(value)
        return value

    def _const(self, value, what):
        value = self._name(value)
        if value not in self.consts:
            raise ZooError("ONNX %s %r must be a constant (initializer) to map to Caffe2" % (what, value))
        return self.consts[value]

    def _new_const(self, name, array):
        self.consts[name] = np.asarray(array)
        return self._input(name)

    def _emit(self, op_type, inputs, outputs, node, **args):
        self.ops.append(make_op(op_type, inputs, outputs, name=node.name, **args))

    def _rank(self, value):
        shape = self.shapes.get(value)
        return len(shape) if shape is not None else None

    # --------------------------------------------------------------------- converters
    def _op_Conv(self, node, a):
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID"):
            raise ZooError("ONNX Conv %r: auto_pad %s is not supported; export with explicit pads"
                           % (node.name, a["auto_pad"]))
        weight = self._const(node.input[1], "Conv weight")
        kernel = list(a.get("kernel_shape", weight.shape[2:]))
        inputs = [self._input(i) for i in node.input if i]
        self._emit("Conv", inputs, node.output[:1], node, order="NCHW", group=a.get("group", 1),
                   **_geometry(kernel, a))

    def _pool(self, node, a, caffe2_type):
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID"):
            raise ZooError("ONNX %s %r: auto_pad %s is not supported" % (node.op_type, node.name,
                                                                        a["auto_pad"]))
        if any(d != 1 for d in a.get("dilations", [])):
            raise ZooError("ONNX %s %r: dilated pooling has no Caffe2 equivalent" % (node.op_type, node.name))
        geometry = _geometry(list(a["kernel_shape"]), a)
        extra = {}
        if a.get("ceil_mode", 0):
            if caffe2_type == "AveragePool" and any(a.get("pads", [])):
                raise ZooError("ONNX AveragePool %r: ceil_mode with padding divides differently "
                               "from Caffe's legacy pooling; not supported" % node.name)
            extra["legacy_pad"] = 3
        if caffe2_type == "AveragePool" and a.get("count_include_pad", 0):
            extra["count_include_pad"] = 1
        self._emit(caffe2_type, [self._input(node.input[0])], node.output[:1], node, order="NCHW",
                   **geometry, **extra)

    def _op_MaxPool(self, node, a):
        if len(node.output) > 1 and node.output[1]:
            raise ZooError("ONNX MaxPool %r: the Indices output has no Caffe2 equivalent" % node.name)
        self._pool(node, a, "MaxPool")

    def _op_AveragePool(self, node, a):
        self._pool(node, a, "AveragePool")

    def _op_GlobalAveragePool(self, node, a):
        self._emit("AveragePool", [self._input(node.input[0])], node.output[:1], node, order="NCHW",
                   global_pooling=1)

    def _op_GlobalMaxPool(self, node, a):
        self._emit("MaxPool", [self._input(node.input[0])], node.output[:1], node, order="NCHW",
                   global_pooling=1)

    def _op_Relu(self, node, a):
        self._emit("Relu", [self._input(node.input[0])], node.output[:1], node)

    _op_Sigmoid = _op_Tanh = None  # set below to the generic unary converter

    def _unary(self, node, a):
        self._emit(_UNARY[node.op_type], [self._input(node.input[0])], node.output[:1], node)

    def _op_LeakyRelu(self, node, a):
        self._emit("LeakyRelu", [self._input(node.input[0])], node.output[:1], node,
                   alpha=float(a.get("alpha", 0.01)))

    def _op_Concat(self, node, a):
        out = node.output[0]
        self._emit("Concat", [self._input(i) for i in node.input], [out, out + "_dims"], node,
                   axis=int(a["axis"]), order="NCHW")

    def _op_Dropout(self, node, a):
        if len(node.output) > 1 and node.output[1] and self._is_consumed(node.output[1]):
            raise ZooError("ONNX Dropout %r: its mask output is used; not supported" % node.name)
        ratio = a.get("ratio", 0.5)
        if len(node.input) > 1 and node.input[1]:
            ratio = float(self._const(node.input[1], "Dropout ratio"))
        self._emit("Dropout", [self._input(node.input[0])], node.output[:1], node,
                   ratio=float(ratio), is_test=1)

    def _op_Identity(self, node, a):
        self.alias[node.output[0]] = self._name(node.input[0])

    def _op_Softmax(self, node, a):
        x, out = self._input(node.input[0]), node.output[0]
        rank = self._rank(x)
        if self.opset < 13:  # coerce to 2-D at `axis`, exactly Caffe2's Softmax
            axis = a.get("axis", 1)
            self._emit("Softmax", [x], [out], node, axis=axis + rank if axis < 0 and rank else axis)
            return
        axis = a.get("axis", -1)
        if rank is None:
            raise ZooError("ONNX Softmax %r: the rank of %r is unknown" % (node.name, x))
        axis = axis + rank if axis < 0 else axis
        shape = self.shapes.get(x)
        if axis == rank - 1 or all(d == 1 for d in shape[axis + 1:]):
            self._emit("Softmax", [x], [out], node, axis=axis)
            return
        perm = list(range(rank))
        perm[axis], perm[-1] = perm[-1], perm[axis]
        self._emit("Transpose", [x], [out + "_t"], node, axes=perm)
        self._emit("Softmax", [out + "_t"], [out + "_ts"], node, axis=rank - 1)
        self._emit("Transpose", [out + "_ts"], [out], node, axes=perm)

    def _op_Flatten(self, node, a):
        self._emit("Flatten", [self._input(node.input[0])], node.output[:1], node,
                   axis=int(a.get("axis", 1)))

    def _op_Reshape(self, node, a):
        out = node.output[0]
        if self._name(node.input[1]) not in self.consts:  # a computed shape: Caffe2's 2-input form
            if a.get("allowzero", 0):
                raise ZooError("ONNX Reshape %r: allowzero=1 is not supported" % node.name)
            self._emit("Reshape", [self._input(node.input[0]), self._input(node.input[1])],
                       [out, out + "_old_shape"], node)
            return
        shape = [int(d) for d in self._const(node.input[1], "Reshape shape").ravel()]
        if a.get("allowzero", 0) and 0 in shape:
            raise ZooError("ONNX Reshape %r: allowzero=1 with a 0 in the shape is not supported" % node.name)
        self._emit("Reshape", [self._input(node.input[0])], [out, out + "_old_shape"], node, shape=shape)

    def _op_Shape(self, node, a):
        x = self._input(node.input[0])
        args = {}
        if "start" in a or "end" in a:
            rank = self._rank(x)
            if rank is None:
                raise ZooError("ONNX Shape %r with start/end: the rank of %r is unknown" % (node.name, x))
            args["axes"] = list(range(rank))[slice(a.get("start", 0), a.get("end"))]
        self._emit("Shape", [x], node.output[:1], node, **args)

    def _op_Transpose(self, node, a):
        x = self._input(node.input[0])
        perm = a.get("perm") or list(reversed(range(self._rank(x))))
        self._emit("Transpose", [x], node.output[:1], node, axes=list(perm))

    def _op_Gemm(self, node, a):
        if a.get("transA", 0):
            raise ZooError("ONNX Gemm %r: transA=1 is not supported" % node.name)
        weight = self._const(node.input[1], "Gemm B") * np.float32(a.get("alpha", 1.0))
        trans_b = a.get("transB", 0)
        n = weight.shape[0] if trans_b else weight.shape[1]
        if len(node.input) > 2 and node.input[2]:
            bias = np.broadcast_to(self._const(node.input[2], "Gemm C"), (n,)).astype(np.float32)
        else:
            bias = np.zeros(n, np.float32)
        bias = bias * np.float32(a.get("beta", 1.0))
        out = node.output[0]
        w = self._new_const(out + "_w", weight.astype(np.float32))
        b = self._new_const(out + "_b", bias)
        self._emit("FC" if trans_b else "FCTransposed", [self._input(node.input[0]), w, b], [out], node)

    def _op_MatMul(self, node, a):
        weight = self._const(node.input[1], "MatMul B")
        if weight.ndim != 2 or self._rank(node.input[0]) != 2:
            raise ZooError("ONNX MatMul %r: only 2-D x constant 2-D maps to Caffe2 FC" % node.name)
        out = node.output[0]
        w = self._new_const(out + "_w", weight.astype(np.float32))
        b = self._new_const(out + "_b", np.zeros(weight.shape[1], np.float32))
        self._emit("FCTransposed", [self._input(node.input[0]), w, b], [out], node)

    def _op_BatchNormalization(self, node, a):
        if a.get("training_mode", 0):
            raise ZooError("ONNX BatchNormalization %r: training_mode=1 is not supported" % node.name)
        self._emit("SpatialBN", [self._input(i) for i in node.input[:5]], node.output[:1], node,
                   is_test=1, epsilon=float(a.get("epsilon", 1e-5)), order="NCHW")

    def _op_LRN(self, node, a):
        out = node.output[0]
        self._emit("LRN", [self._input(node.input[0])], [out, out + "_scale"], node, size=int(a["size"]),
                   alpha=float(a.get("alpha", 1e-4)), beta=float(a.get("beta", 0.75)),
                   bias=float(a.get("bias", 1.0)), order="NCHW")

    def _op_Sum(self, node, a):
        self._emit("Sum", [self._input(i) for i in node.input], node.output[:1], node)

    def _elementwise(self, node, a):
        x, y = (self._name(i) for i in node.input)
        sx, sy = self.shapes.get(x), self.shapes.get(y)
        op_type = _ELEMENTWISE[node.op_type]
        if sx is not None and sx == sy:
            self._emit(op_type, [self._input(x), self._input(y)], node.output[:1], node)
            return
        if y not in self.consts or sx is None:
            raise ZooError("ONNX %s %r: broadcasting maps to Caffe2 only with a constant second "
                           "operand of known layout" % (node.op_type, node.name))
        value = self.consts[y]
        full = (1,) * (len(sx) - value.ndim) + value.shape
        first = next((i for i, d in enumerate(full) if d != 1), len(full))
        last = max((i for i, d in enumerate(full) if d != 1), default=first - 1)
        core = full[first:last + 1]
        if tuple(sx[first:last + 1]) != core:
            raise ZooError("ONNX %s %r: operand shape %s does not broadcast as one block against %s"
                           % (node.op_type, node.name, value.shape, sx))
        b = self._new_const(node.output[0] + "_operand", value.reshape(core or (1,)))
        self._emit(op_type, [self._input(x), b], node.output[:1], node, broadcast=1,
                   axis=first if core else len(sx) - 1)

    _op_Add = _op_Sub = _op_Mul = _op_Div = None

    def _is_consumed(self, value):
        return any(value in n.input for n in self.graph.node) or any(
            value == o.name for o in self.graph.output)


for _t in _UNARY:
    if _t != "Relu":
        setattr(_Importer, "_op_" + _t, _Importer._unary)
for _t in _ELEMENTWISE:
    setattr(_Importer, "_op_" + _t, _Importer._elementwise)


def _attrs(node):
    import onnx
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _geometry(kernel, a):
    """ONNX kernel_shape/strides/pads/dilations -> Caffe2 Conv/Pool arguments (2-D)."""
    if len(kernel) != 2:
        raise ZooError("only 2-D convolution and pooling map to Caffe2 NCHW ops (kernel %s)" % kernel)
    strides = list(a.get("strides", [1, 1]))
    pads = list(a.get("pads", [0, 0, 0, 0]))  # ONNX: [top, left, bottom, right], as Caffe2 `pads`
    dilations = list(a.get("dilations", [1, 1]))
    args = {}
    args.update(kernel=kernel[0]) if kernel[0] == kernel[1] else args.update(kernels=list(kernel))
    args.update(stride=strides[0]) if strides[0] == strides[1] else args.update(strides=strides)
    if len(set(pads)) == 1:
        if pads[0]:
            args["pad"] = pads[0]
    else:
        args["pads"] = pads
    if any(d != 1 for d in dilations):
        args.update(dilation=dilations[0]) if dilations[0] == dilations[1] else args.update(
            dilations=dilations)
    return args
