"""Import an ONNX CNN (the ONNX-zoo SqueezeNet, a plain torch.onnx.export of a torch model) into
Caffe2 NetDefs.

    ONNX graph ──constant folding, repeated until nothing changes: Constant, Shape/Size of a
                value whose shape is known (ONNX shape inference at the given input shape), any
                node whose inputs are all constant (evaluated with onnx.reference): the shape
                arithmetic torch.onnx.export writes (Shape, Gather, ConstantOfShape, Slice, Cast,
                Concat, ...) disappears ──►  weights  ──► init net (GivenTensorFill)
               ──one small converter per node type (the ONNX_CONVERTERS table)─► predict net

Blob names stay the ONNX value names. Node types map as follows: Conv, Relu/Sigmoid/Tanh/LeakyRelu,
MaxPool/AveragePool (ceil_mode=1 -> legacy_pad=3), GlobalAveragePool/GlobalMaxPool
(global_pooling=1), Concat, Dropout (is_test=1), Identity (an alias), Softmax (opset-aware),
Flatten, Reshape (constant shape), Transpose, Gemm/MatMul (-> FC / FCTransposed),
BatchNormalization (-> SpatialBN is_test=1), LRN, Add/Sub/Mul/Div (legacy broadcast for a constant
operand, numpy broadcast for two computed ones, e.g. a squeeze-and-excitation gate), Sum, Pad
(-> PadImage), Clip (ReLU6), HardSigmoid, HardSwish (-> HardSigmoid + Mul), ReduceMean,
Resize/Upsample (nearest, asymmetric, floor -> ResizeNearest). Anything else is an error naming
the node and the closest supported types.
"""
import os

import numpy as np

from food101.caffe2.proto import caffe2_pb2
from food101.interop.converters import ConverterTable, UnknownConverterError
from food101.caffe2.utils import given_fill, make_op
from food101.zoo.model import ZooError, ZooModel

_ELEMENTWISE = {"Add": "Add", "Sub": "Sub", "Mul": "Mul", "Div": "Div"}
_UNARY = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh"}
# Node types never evaluated at import even with constant inputs (they are not deterministic).
_NEVER_FOLD = {"Dropout", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
               "Multinomial", "Bernoulli"}

# Converter table: ONNX node type -> method of _Importer. A duplicate type is an error.
ONNX_CONVERTERS = ConverterTable("from_onnx", target="Caffe2")
onnx_converter = ONNX_CONVERTERS.converter


def supported_onnx_ops():
    return ONNX_CONVERTERS.names()


def from_onnx(source, input_shape=None, name=None):
    """An ONNX model (path, bytes or ModelProto) -> ZooModel with Caffe2 init and predict nets."""
    import onnx
    model = source if isinstance(source, onnx.ModelProto) else load_onnx_model(source)
    return _Importer(model, input_shape, name).run()


def load_onnx_model(source):
    """onnx.load(source) (a path, file object or bytes), refusing what is not an ONNX model with
    a ZooError naming the file: an unreadable, empty or truncated file, or another protobuf (a
    .caffemodel renamed .onnx parses as a ModelProto with no graph)."""
    import onnx
    from google.protobuf.message import DecodeError
    what = source if isinstance(source, (str, os.PathLike)) else "the ONNX bytes"
    if isinstance(source, (str, os.PathLike)):
        try:
            size = os.path.getsize(source)
        except OSError as e:
            raise ZooError("cannot read ONNX file %s: %s" % (source, e.strerror or e)) from None
        if size == 0:
            raise ZooError("%s is not an ONNX model (the file is empty)" % what)
    try:
        model = (onnx.load_model_from_string(bytes(source))
                 if isinstance(source, (bytes, bytearray)) else onnx.load(source))
    except DecodeError as e:
        raise ZooError("%s is not an ONNX model (its protobuf does not parse: %s; a truncated "
                       "download or another format?)" % (what, e)) from None
    except OSError as e:  # external data files missing, unreadable file
        raise ZooError("cannot read ONNX model %s: %s" % (what, e)) from None
    if not model.ir_version or not model.HasField("graph") or not model.graph.node:
        raise ZooError("%s is not an ONNX model (it parses as protobuf but has %s: another format, "
                       "e.g. a .caffemodel, renamed .onnx?)" % (what, ", ".join(
                           part for part, missing in (("no ir_version", not model.ir_version),
                                                      ("no graph nodes", not model.graph.node))
                           if missing)))
    return model


class _Importer:
    def __init__(self, model, input_shape, name):
        import onnx
        from onnx import numpy_helper
        self.model = model
        self.graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        self.consts = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.alias = {}
        self.shape_derived = set()  # constants computed from folded Shape nodes
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
        self.inputs_batch_name = data.name
        remaining = self._fold_constants(data.name, shape)
        self.shapes = self._infer_shapes(remaining, data.name, shape)
        for node in remaining:
            try:
                convert = ONNX_CONVERTERS.lookup(node.op_type, where="ONNX node %r (%s)" % (
                    node.name or node.output[0], node.op_type))
            except UnknownConverterError as e:
                raise ZooError(str(e)) from None
            convert(self, node, _attrs(node))
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

    def _fold_constants(self, data_name, data_shape):
        """Evaluate every node whose value does not depend on the input's values (constants,
        and Shape/Size of values whose shape inference knows), until nothing changes; return
        the other nodes."""
        from onnx.reference import ReferenceEvaluator
        nodes = list(self.graph.node)
        # a Shape read only as the shape of a Reshape stays a Caffe2 Shape op: the batch size
        # then follows the input at run time
        readers = {}
        for node in nodes:
            for position, name in enumerate(node.input):
                readers.setdefault(name, []).append((node.op_type, position))
        dynamic = {n.output[0] for n in nodes if n.op_type == "Shape" and readers.get(n.output[0])
                   and all(r == ("Reshape", 1) for r in readers[n.output[0]])}
        while True:
            shapes = self._infer_shapes(nodes, data_name, data_shape, fold=True)
            remaining = []
            for node in nodes:
                inputs = [i for i in node.input if i]
                shape = shapes.get(node.input[0]) if node.input else None
                if node.op_type in ("Shape", "Size") and shape is not None \
                        and node.output[0] not in dynamic:
                    self.consts[node.output[0]] = _shape_value(node, shape)
                    self.shape_derived.add(node.output[0])
                elif node.op_type not in _NEVER_FOLD and all(i in self.consts for i in inputs):
                    feeds = {i: self.consts[i] for i in inputs}
                    values = ReferenceEvaluator(node, opsets={"": self.opset}).run(None, feeds)
                    for out, value in zip(node.output, values):
                        self.consts[out] = np.asarray(value)
                    if self.shape_derived.intersection(inputs):
                        self.shape_derived.update(node.output)
                else:
                    remaining.append(node)
            if len(remaining) == len(nodes):
                return remaining
            nodes = remaining

    def _infer_shapes(self, nodes, data_name, data_shape, fold=False):
        """{value: shape} from ONNX shape inference on the folded graph (fold=True: only the
        fully known shapes of computed values, for folding Shape nodes)."""
        helper, numpy_helper = self.onnx.helper, self.onnx.numpy_helper
        if fold and not any(n.op_type in ("Shape", "Size") for n in nodes):
            return {}
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
        if fold:
            return shapes
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
    @onnx_converter("Conv")
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

    @onnx_converter("MaxPool")
    def _op_MaxPool(self, node, a):
        if len(node.output) > 1 and node.output[1]:
            raise ZooError("ONNX MaxPool %r: the Indices output has no Caffe2 equivalent" % node.name)
        self._pool(node, a, "MaxPool")

    @onnx_converter("AveragePool")
    def _op_AveragePool(self, node, a):
        self._pool(node, a, "AveragePool")

    @onnx_converter("GlobalAveragePool")
    def _op_GlobalAveragePool(self, node, a):
        self._emit("AveragePool", [self._input(node.input[0])], node.output[:1], node, order="NCHW",
                   global_pooling=1)

    @onnx_converter("GlobalMaxPool")
    def _op_GlobalMaxPool(self, node, a):
        self._emit("MaxPool", [self._input(node.input[0])], node.output[:1], node, order="NCHW",
                   global_pooling=1)

    @onnx_converter("Relu")
    def _op_Relu(self, node, a):
        self._emit("Relu", [self._input(node.input[0])], node.output[:1], node)

    @onnx_converter("Sigmoid", "Tanh")
    def _unary(self, node, a):
        self._emit(_UNARY[node.op_type], [self._input(node.input[0])], node.output[:1], node)

    @onnx_converter("LeakyRelu")
    def _op_LeakyRelu(self, node, a):
        self._emit("LeakyRelu", [self._input(node.input[0])], node.output[:1], node,
                   alpha=float(a.get("alpha", 0.01)))

    @onnx_converter("Concat")
    def _op_Concat(self, node, a):
        out = node.output[0]
        self._emit("Concat", [self._input(i) for i in node.input], [out, out + "_dims"], node,
                   axis=int(a["axis"]), order="NCHW")

    @onnx_converter("Dropout")
    def _op_Dropout(self, node, a):
        if len(node.output) > 1 and node.output[1] and self._is_consumed(node.output[1]):
            raise ZooError("ONNX Dropout %r: its mask output is used; not supported" % node.name)
        ratio = a.get("ratio", 0.5)
        if len(node.input) > 1 and node.input[1]:
            ratio = float(self._const(node.input[1], "Dropout ratio"))
        self._emit("Dropout", [self._input(node.input[0])], node.output[:1], node,
                   ratio=float(ratio), is_test=1)

    @onnx_converter("Identity")
    def _op_Identity(self, node, a):
        self.alias[node.output[0]] = self._name(node.input[0])

    @onnx_converter("Softmax")
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

    @onnx_converter("Flatten")
    def _op_Flatten(self, node, a):
        self._emit("Flatten", [self._input(node.input[0])], node.output[:1], node,
                   axis=int(a.get("axis", 1)))

    @onnx_converter("Reshape")
    def _op_Reshape(self, node, a):
        out = node.output[0]
        if self._name(node.input[1]) not in self.consts:  # a computed shape: Caffe2's 2-input form
            if a.get("allowzero", 0):
                raise ZooError("ONNX Reshape %r: allowzero=1 is not supported" % node.name)
            self._emit("Reshape", [self._input(node.input[0]), self._input(node.input[1])],
                       [out, out + "_old_shape"], node)
            return
        shape = [int(d) for d in self._const(node.input[1], "Reshape shape").ravel()]
        batch = self.shapes.get(self.inputs_batch_name, (None,))[0]
        if batch and shape and shape[0] == batch and \
                self.shapes.get(self._name(node.input[0]), (None,))[0] == batch:
            # x.view(x.size(0), -1) traced at the export batch size (torch folds it into a
            # constant): the batch dimension follows the input at run time
            shape[0] = 0
        if a.get("allowzero", 0) and 0 in shape:
            raise ZooError("ONNX Reshape %r: allowzero=1 with a 0 in the shape is not supported" % node.name)
        self._emit("Reshape", [self._input(node.input[0])], [out, out + "_old_shape"], node, shape=shape)

    @onnx_converter("Shape")
    def _op_Shape(self, node, a):
        x = self._input(node.input[0])
        args = {}
        if "start" in a or "end" in a:
            rank = self._rank(x)
            if rank is None:
                raise ZooError("ONNX Shape %r with start/end: the rank of %r is unknown" % (node.name, x))
            args["axes"] = list(range(rank))[slice(a.get("start", 0), a.get("end"))]
        self._emit("Shape", [x], node.output[:1], node, **args)

    @onnx_converter("Transpose")
    def _op_Transpose(self, node, a):
        x = self._input(node.input[0])
        perm = a.get("perm") or list(reversed(range(self._rank(x))))
        self._emit("Transpose", [x], node.output[:1], node, axes=list(perm))

    @onnx_converter("Gemm")
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

    @onnx_converter("MatMul")
    def _op_MatMul(self, node, a):
        weight = self._const(node.input[1], "MatMul B")
        if weight.ndim != 2 or self._rank(node.input[0]) != 2:
            raise ZooError("ONNX MatMul %r: only 2-D x constant 2-D maps to Caffe2 FC" % node.name)
        out = node.output[0]
        w = self._new_const(out + "_w", weight.astype(np.float32))
        b = self._new_const(out + "_b", np.zeros(weight.shape[1], np.float32))
        self._emit("FCTransposed", [self._input(node.input[0]), w, b], [out], node)

    @onnx_converter("BatchNormalization")
    def _op_BatchNormalization(self, node, a):
        if a.get("training_mode", 0):
            raise ZooError("ONNX BatchNormalization %r: training_mode=1 is not supported" % node.name)
        self._emit("SpatialBN", [self._input(i) for i in node.input[:5]], node.output[:1], node,
                   is_test=1, epsilon=float(a.get("epsilon", 1e-5)), order="NCHW")

    @onnx_converter("LRN")
    def _op_LRN(self, node, a):
        out = node.output[0]
        self._emit("LRN", [self._input(node.input[0])], [out, out + "_scale"], node, size=int(a["size"]),
                   alpha=float(a.get("alpha", 1e-4)), beta=float(a.get("beta", 0.75)),
                   bias=float(a.get("bias", 1.0)), order="NCHW")

    @onnx_converter("Sum")
    def _op_Sum(self, node, a):
        self._emit("Sum", [self._input(i) for i in node.input], node.output[:1], node)

    @onnx_converter("Add", "Sub", "Mul", "Div")
    def _elementwise(self, node, a):
        x, y = (self._name(i) for i in node.input)
        sx, sy = self.shapes.get(x), self.shapes.get(y)
        op_type = _ELEMENTWISE[node.op_type]
        if sx is not None and sx == sy:
            self._emit(op_type, [self._input(x), self._input(y)], node.output[:1], node)
            return
        if y not in self.consts or sx is None:
            # two computed operands (a squeeze-and-excitation gate N x C x 1 x 1 times N x C x H
            # x W): Caffe2's numpy-style broadcast (broadcast=0)
            if sx is None or sy is None or not _broadcastable(sx, sy):
                raise ZooError("ONNX %s %r: operands %s and %s (shapes %s, %s) do not broadcast "
                               "to one result Caffe2 can compute" % (node.op_type, node.name, x, y,
                                                                     sx, sy))
            self._emit(op_type, [self._input(x), self._input(y)], node.output[:1], node)
            return
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

    @onnx_converter("Pad")
    def _op_Pad(self, node, a):
        """Spatial padding of an N x C x H x W value -> PadImage (constant, reflect or edge)."""
        x = self._name(node.input[0])
        if len(node.input) > 1 and node.input[1]:
            pads = [int(p) for p in self._const(node.input[1], "Pad pads").ravel()]
        else:
            pads = [int(p) for p in a.get("pads", [])]
        value = 0.0
        if len(node.input) > 2 and node.input[2]:
            value = float(self._const(node.input[2], "Pad constant_value").ravel()[0])
        elif "value" in a:
            value = float(a["value"])
        rank = self._rank(x)
        if len(node.input) > 3 and node.input[3]:  # opset 18 `axes`: pads only for those axes
            axes = [int(v) % rank for v in self._const(node.input[3], "Pad axes").ravel()]
            full = [0] * (2 * rank)
            for i, axis in enumerate(axes):
                full[axis], full[rank + axis] = pads[i], pads[len(axes) + i]
            pads = full
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if rank != 4 or len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)):
            raise ZooError("ONNX Pad %r: only padding of the two spatial dims of an N x C x H x W "
                           "value maps to Caffe2 PadImage (pads %s, rank %s)" % (node.name, pads, rank))
        if any(p < 0 for p in pads):
            raise ZooError("ONNX Pad %r: negative pads (cropping) %s are not supported" % (node.name, pads))
        if mode not in ("constant", "reflect", "edge"):
            raise ZooError("ONNX Pad %r: mode %r has no Caffe2 PadImage mode" % (node.name, mode))
        if not any(pads):
            self.alias[node.output[0]] = x
            return
        self._emit("PadImage", [self._input(x)], node.output[:1], node, pad_t=pads[2], pad_l=pads[3],
                   pad_b=pads[6], pad_r=pads[7], mode=mode, value=value, order="NCHW")

    @onnx_converter("Clip")
    def _op_Clip(self, node, a):
        bounds = {"min": a.get("min"), "max": a.get("max")}
        for position, key in ((1, "min"), (2, "max")):
            if len(node.input) > position and node.input[position]:
                bounds[key] = float(self._const(node.input[position], "Clip " + key).ravel()[0])
        self._emit("Clip", [self._input(node.input[0])], node.output[:1], node,
                   **{k: float(v) for k, v in bounds.items() if v is not None})

    @onnx_converter("HardSigmoid")
    def _op_HardSigmoid(self, node, a):
        self._emit("HardSigmoid", [self._input(node.input[0])], node.output[:1], node,
                   alpha=float(a.get("alpha", 0.2)), beta=float(a.get("beta", 0.5)))

    @onnx_converter("HardSwish")
    def _op_HardSwish(self, node, a):
        """x * HardSigmoid(x; 1/6, 1/2), two Caffe2 ops."""
        x, out = self._input(node.input[0]), node.output[0]
        self._emit("HardSigmoid", [x], [out + "_hardsigmoid"], node, alpha=1.0 / 6, beta=0.5)
        self._emit("Mul", [x, out + "_hardsigmoid"], [out], node)

    @onnx_converter("ReduceMean")
    def _op_ReduceMean(self, node, a):
        x = self._input(node.input[0])
        axes = a.get("axes")
        if len(node.input) > 1 and node.input[1]:
            axes = self._const(node.input[1], "ReduceMean axes").ravel().tolist()
        rank = self._rank(x)
        if axes is None or len(axes) == 0:
            if a.get("noop_with_empty_axes", 0):
                self.alias[node.output[0]] = x
                return
            if rank is None:
                raise ZooError("ONNX ReduceMean %r: the rank of %r is unknown" % (node.name, x))
            axes = list(range(rank))
        if any(v < 0 for v in axes):
            if rank is None:
                raise ZooError("ONNX ReduceMean %r: negative axes need the rank of %r" % (node.name, x))
            axes = [v % rank for v in axes]
        self._emit("ReduceMean", [x], node.output[:1], node, axes=sorted(int(v) for v in axes),
                   keepdims=int(a.get("keepdims", 1)))

    @onnx_converter("Resize", "Upsample")
    def _op_Resize(self, node, a):
        """Nearest-neighbour upsampling with Caffe2's indexing (ResizeNearest): ONNX mode
        nearest, coordinate_transformation_mode asymmetric, nearest_mode floor."""
        x = self._name(node.input[0])
        text = lambda key, default: (a.get(key, default).decode() if isinstance(  # noqa: E731
            a.get(key, default), bytes) else a.get(key, default))
        mode = text("mode", "nearest")
        transform = text("coordinate_transformation_mode", "half_pixel" if node.op_type == "Resize"
                         and self.opset >= 11 else "asymmetric")
        rounding = text("nearest_mode", "round_prefer_floor")
        shape = self.shapes.get(x)
        if node.op_type == "Upsample" or self.opset < 11:
            scales = a.get("scales") or self._const(node.input[1], "Upsample scales").ravel().tolist()
            rounding = "floor"
        else:
            scales = None
            if len(node.input) > 2 and node.input[2] and self._const(node.input[2], "Resize scales").size:
                scales = self._const(node.input[2], "Resize scales").ravel().tolist()
            elif len(node.input) > 3 and node.input[3]:
                sizes = self._const(node.input[3], "Resize sizes").ravel().tolist()
                if shape is None:
                    raise ZooError("ONNX Resize %r: sizes need the input shape of %r" % (node.name, x))
                scales = [o / float(i) for o, i in zip(sizes, shape)]
        integral = scales is not None and all(float(s).is_integer() for s in scales[2:])
        exact = rounding == "floor" or (integral and all(s <= 2 for s in scales[2:]))
        if mode != "nearest" or transform != "asymmetric" or not exact or scales is None \
                or len(scales) != 4 or scales[0] != 1 or scales[1] != 1:
            raise ZooError("ONNX %s %r: only nearest-neighbour resizing of H and W with "
                           "coordinate_transformation_mode=asymmetric and nearest_mode=floor maps to "
                           "Caffe2 ResizeNearest (got mode=%s, %s, %s, scales %s)"
                           % (node.op_type, node.name, mode, transform, rounding, scales))
        self._emit("ResizeNearest", [self._input(x)], node.output[:1], node,
                   height_scale=float(scales[2]), width_scale=float(scales[3]), order="NCHW")

    def _is_consumed(self, value):
        return any(value in n.input for n in self.graph.node) or any(
            value == o.name for o in self.graph.output)


def _broadcastable(a, b):
    try:
        np.broadcast_shapes(tuple(a), tuple(b))
        return True
    except ValueError:
        return False


def _shape_value(node, shape):
    """The value of a Shape (with opset-15 start/end) or Size node for a known input shape."""
    if node.op_type == "Size":
        return np.asarray(int(np.prod(shape)), np.int64)
    start = end = None
    for attr in node.attribute:
        if attr.name == "start":
            start = attr.i
        elif attr.name == "end":
            end = attr.i
    return np.asarray(list(shape)[slice(start, end)], np.int64)


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
