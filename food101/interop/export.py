"""Export a fine-tuned model: a Caffe2 deploy folder (Model Zoo format) or an ONNX file.

Both start from the *deploy* form of the model: the zoo predict net after classifier surgery
(input `data`: float NCHW, BGR, mean-subtracted, as the zoo expects; output `softmaxout`),
with test-mode Dropout and SpatialBN, and the trained values of every blob it reads.

    to_caffe2(model, dest)   dest/init_net.pb (GivenTensorFill ops), predict_net.pb,
                             value_info.json, labels.txt, preprocess.json; loadable by
                             food101.zoo.load and by real Caffe2 (standard op types and args only)
    to_onnx(model, path)     an ONNX model (opset >= 13) checked with onnx.checker

`model` is a ZooModel (e.g. from replace_classifier) or the ModelHelper returned by
food101.zoo.build_finetune_model; the weights default to the blobs in the current workspace.
"""
import json
import os
import tempfile

import numpy as np
import torch

from food101.caffe2.errors import Caffe2Error
from food101.caffe2.ops.registry import lookup, parse_arguments
from food101.caffe2.proto import caffe2_pb2
from food101.caffe2.utils import ArgsToDict, external_reads, given_fill, set_arg
from food101.zoo import _nets
from food101.zoo.model import LABELS, ZooModel, load, write_labels, write_value_info

DEFAULT_MEAN_BGR = (104.0, 117.0, 123.0)


class ExportError(Caffe2Error):
    pass


# ---------------------------------------------------------------------- deploy model
class _Deploy:
    """The deploy form of a model: a clean inference predict net and the values it reads."""

    def __init__(self, model, weights):
        info = getattr(model, "finetune", None)
        zoo = info.deploy if info is not None else model
        if not isinstance(zoo, ZooModel):
            raise ExportError("export needs a ZooModel or a model from build_finetune_model, got %r"
                              % model)
        self.zoo = zoo
        self.predict_net = predict = _inference_net(zoo.predict_net)
        self.params = [b for b in external_reads(predict) if b != zoo.input_name]
        self.values = _gather(self.params, weights)
        del predict.external_input[:]
        predict.external_input.extend([zoo.input_name] + self.params)
        del predict.external_output[:]
        predict.external_output.append(zoo.output_name)
        self.name = predict.name or "model"
        self.input_name, self.input_shape = zoo.input_name, zoo.input_shape
        self.output_name = zoo.output_name

    def init_net(self):
        init = caffe2_pb2.NetDef(name=self.name + "_init")
        init.op.extend(given_fill(name, self.values[name]) for name in self.params)
        init.external_output.extend(self.params)
        return init

    def zoo_model(self):
        z = self.zoo
        return ZooModel(self.init_net(), self.predict_net, z.input_name, z.input_shape, z.input_dtype,
                        output_name=z.output_name, class_names=z.class_names)

    def run(self, inputs):
        """The deploy net's output on `inputs`, computed in a private workspace."""
        feeds = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.values.items()}
        feeds[self.input_name] = torch.from_numpy(np.ascontiguousarray(inputs))
        blobs = _nets.run_in_private_workspace([self.predict_net], feeds, name="export-run")
        return blobs


def deploy_model(model, weights=None):
    """(ZooModel with a clean inference predict net and a GivenTensorFill init net,
    {blob: ndarray} of every parameter). weights default to the current workspace's blobs."""
    deploy = _Deploy(model, weights)
    return deploy.zoo_model(), deploy.values


def _gather(names, weights):
    if weights is None:
        from food101.caffe2 import workspace
        missing = [n for n in names if not workspace.HasBlob(n)]
        if missing:
            raise ExportError("export: the current workspace lacks %s (run the model's init net "
                              "and training first, or pass weights=)" % ", ".join(missing))
        return {n: np.asarray(workspace.FetchBlob(n)) for n in names}
    missing = [n for n in names if n not in weights]
    if missing:
        raise ExportError("export: weights lacks %s" % ", ".join(missing))
    return {n: _nets.to_numpy(weights[n]) for n in names}


def _inference_net(predict_net):
    """A copy with test-mode Dropout/SpatialBN, training-only outputs dropped, no engine hints."""
    net = _nets.clone(predict_net)
    for op in net.op:
        if op.type in ("Dropout", "SpatialBN"):
            set_arg(op, "is_test", 1)
            del op.output[1:]
        op.engine = ""
        keep = [a for a in op.arg if a.name not in ("exhaustive_search", "cudnn_exhaustive_search",
                                                      "ws_nbytes_limit")]
        del op.arg[:]
        op.arg.extend(keep)
        op.ClearField("device_option")
    net.ClearField("device_option")
    return net


# ---------------------------------------------------------------------- Caffe2
def to_caffe2(model, dest, weights=None, class_names=None, mean_bgr=DEFAULT_MEAN_BGR, crop=None):
    """Write a deployable Model Zoo folder; returns the ZooModel loaded back from it."""
    deployed, _ = deploy_model(model, weights)
    if isinstance(class_names, (str, os.PathLike)):
        from food101.zoo.model import read_labels
        class_names = read_labels(class_names)
    names = class_names or deployed.class_names
    if names is not None and len(names) != deployed.num_classes:
        raise ExportError("export: %d class names for a %d-way model" % (len(names), deployed.num_classes))
    os.makedirs(dest, exist_ok=True)
    from food101.caffe2.proto import save_net
    save_net(deployed.init_net, os.path.join(dest, "init_net.pb"))
    save_net(deployed.predict_net, os.path.join(dest, "predict_net.pb"))
    write_value_info(os.path.join(dest, "value_info.json"), deployed.input_name,
                     deployed.input_shape, deployed.input_dtype)
    if names:
        write_labels(os.path.join(dest, LABELS), names)
    with open(os.path.join(dest, "preprocess.json"), "w") as fh:
        json.dump({"input": deployed.input_name, "layout": "NCHW", "color": "BGR", "dtype": "float32",
                   "mean_bgr": [float(m) for m in mean_bgr] if mean_bgr is not None else None,
                   "crop": int(crop or deployed.input_shape[-1]), "output": deployed.output_name,
                   "note": "feed float images with the mean already subtracted; output is N x C x 1 x 1"},
                  fh, indent=1)
        fh.write("\n")
    return load(dest)


# ---------------------------------------------------------------------- ONNX
def to_onnx(model, path, weights=None, input_shape=None, opset=None, dynamic_batch=True, check=True):
    """Write an ONNX model of the deploy net; returns the onnx.ModelProto (checked).

    opset: >= 13. The default is 13, or 15 when the net has SpatialBN: BatchNormalization before
    opset 14 carries a training-era `momentum` attribute that some consumers (onnx's own
    reference evaluator among them) misread as training mode; opset 14 made it explicit.
    input_shape: the shape written into the graph (default value_info's); with dynamic_batch the
    batch dimension is the symbol "N"."""
    import onnx
    deployed = _Deploy(model, weights)
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
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        onnx.save(proto, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return proto


def verify_onnx(onnx_model, model, weights=None, inputs=None, tol=1e-4, seed=0):
    """Run the ONNX file with onnx.reference.ReferenceEvaluator and the deploy net with this
    project's executor on the same input; returns the largest absolute difference and raises
    ExportError above `tol`. inputs: an array (default: one seeded random image at the
    model's input size)."""
    import onnx
    from onnx.reference import ReferenceEvaluator
    deployed = _Deploy(model, weights)
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
    """Caffe2 predict net -> ONNX nodes, one small method per Caffe2 op type."""

    def __init__(self, deployed, input_shape, opset, dynamic_batch):
        import onnx
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
            method = getattr(self, "_op_" + op.type, None)
            if method is None:
                raise ExportError("to_onnx: op #%d %s (%s -> %s) has no ONNX mapping; supported: %s" % (
                    index, op.type, list(op.input), list(op.output),
                    ", ".join(sorted(k[4:] for k in dir(self) if k.startswith("_op_")))))
            method(op, ArgsToDict(op.arg))
        return self._model()

    def _model(self):
        helper, TP = self.helper, self.onnx.TensorProto
        batch = "N" if self.dynamic_batch else self.input_shape[0]
        x = self.model.input_name
        out = self.model.output_name
        final = self._name(out)
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
    def _name(self, blob):
        """The ONNX value holding the current version of Caffe2 blob `blob`."""
        return self.current.get(blob, blob)

    def _in(self, blob):
        name = self._name(blob)
        if blob in self.values and blob not in self.initializers:
            self.initializers[blob] = self.onnx.numpy_helper.from_array(
                np.ascontiguousarray(self.values[blob]), blob)
        return name

    def _out(self, op, position=0):
        """A fresh ONNX name for an op output: ONNX is SSA, Caffe2 writes blobs in place
        (Relu conv1 -> conv1). The last write of a blob keeps the blob's own name."""
        blob = op.output[position]
        self.written[blob] = self.written.get(blob, 0) + 1
        name = blob if self.written[blob] == self.writes[blob] else "%s__v%d" % (blob, self.written[blob])
        self.current[blob] = name
        return name

    def _const(self, hint, array):
        self.counter += 1
        name = "%s__const%d" % (hint, self.counter)
        self.initializers[name] = self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name)
        return name

    def _tmp(self, hint):
        self.counter += 1
        return "%s__tmp%d" % (hint, self.counter)

    def _node(self, op_type, inputs, outputs, op=None, **attrs):
        self.nodes.append(self.helper.make_node(op_type, inputs, outputs,
                                                name=self._tmp(op.output[0]) if op is not None else None,
                                                **attrs))

    def _nchw(self, op, a):
        if a.get("order", "NCHW") != "NCHW":
            raise ExportError("to_onnx: %s %r uses order %s; only NCHW exports" % (
                op.type, op.output[0], a["order"]))

    def _unused_extra_outputs(self, op):
        for extra in op.output[1:]:
            if extra in self.consumed:
                raise ExportError("to_onnx: %s output %r is used later; it has no ONNX equivalent"
                                  % (op.type, extra))

    # ------------------------------------------------------------------ converters
    def _op_Conv(self, op, a):
        self._nchw(op, a)
        geometry = _window(op)
        self._node("Conv", [self._in(i) for i in op.input], [self._out(op)], op,
                   kernel_shape=geometry["kernel"], strides=geometry["stride"], pads=geometry["pads"],
                   dilations=geometry["dilation"], group=int(a.get("group", 1)))

    def _pool(self, op, a, onnx_type):
        self._nchw(op, a)
        x = self._in(op.input[0])
        if a.get("global_pooling", 0):
            self._node("Global" + onnx_type, [x], [self._out(op)], op)
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
        expected = _onnx_pool_shape(self.shapes[op.input[0]], geometry, bool(attrs.get("ceil_mode")))
        if tuple(expected) != tuple(self.shapes[op.output[0]][2:]):
            raise ExportError("to_onnx: %s %r: Caffe2 output %s differs from ONNX's %s for these "
                              "pooling arguments" % (op.type, op.output[0],
                                                     list(self.shapes[op.output[0]][2:]), expected))
        self._node(onnx_type, [x], [self._out(op)], op, **attrs)

    def _op_MaxPool(self, op, a):
        self._pool(op, a, "MaxPool")

    def _op_AveragePool(self, op, a):
        self._pool(op, a, "AveragePool")

    def _op_Relu(self, op, a):
        self._node("Relu", [self._in(op.input[0])], [self._out(op)], op)

    def _op_Sigmoid(self, op, a):
        self._node("Sigmoid", [self._in(op.input[0])], [self._out(op)], op)

    def _op_Tanh(self, op, a):
        self._node("Tanh", [self._in(op.input[0])], [self._out(op)], op)

    def _op_LeakyRelu(self, op, a):
        self._node("LeakyRelu", [self._in(op.input[0])], [self._out(op)], op, alpha=float(a.get("alpha", 0.01)))

    def _op_Concat(self, op, a):
        self._unused_extra_outputs(op)
        if a.get("add_axis", 0):
            raise ExportError("to_onnx: Concat %r with add_axis=1 is not supported" % op.output[0])
        axis = a.get("axis", 3 if a.get("order", "NCHW") == "NHWC" else 1)
        self._node("Concat", [self._in(i) for i in op.input], [self._out(op)], op, axis=int(axis))

    def _alias(self, op, a):
        """Ops that are the identity at inference: later readers use the input's value."""
        self._unused_extra_outputs(op)
        self.current[op.output[0]] = self._in(op.input[0])

    _op_Dropout = _op_StopGradient = _alias

    def _op_Copy(self, op, a):
        self._node("Identity", [self._in(op.input[0])], [self._out(op)], op)

    def _op_Softmax(self, op, a):
        x = self._in(op.input[0])
        shape = self.shapes[op.input[0]]
        axis = a.get("axis", 1)
        axis = axis + len(shape) if axis < 0 else axis
        if all(d == 1 for d in shape[axis + 1:]):  # one axis holds all of it: ONNX 13 Softmax agrees
            self._node("Softmax", [x], [self._out(op)], op, axis=axis)
            return
        # Caffe2 normalises over all dims from `axis` on: flatten, softmax, restore the shape.
        flat, soft, dims = self._tmp("flat"), self._tmp("soft"), self._tmp("shape")
        self._node("Shape", [x], [dims], op)
        self._node("Flatten", [x], [flat], op, axis=axis)
        self._node("Softmax", [flat], [soft], op, axis=1)
        self._node("Reshape", [soft, dims], [self._out(op)], op)

    def _fc(self, op, a, trans_b):
        x = self._in(op.input[0])
        axis = a.get("axis", 1)
        if a.get("axis_w", 1) != 1:
            raise ExportError("to_onnx: %s %r with axis_w != 1 is not supported" % (op.type, op.output[0]))
        if len(self.shapes[op.input[0]]) != 2 or axis != 1:
            flat = self._tmp(op.output[0] + "_in")
            self._node("Flatten", [x], [flat], op, axis=axis)
            x = flat
        inputs = [x] + [self._in(i) for i in op.input[1:]]
        self._node("Gemm", inputs, [self._out(op)], op, transB=trans_b)

    def _op_FC(self, op, a):
        self._fc(op, a, 1)

    def _op_FCTransposed(self, op, a):
        self._fc(op, a, 0)

    def _op_SpatialBN(self, op, a):
        self._nchw(op, a)
        self._node("BatchNormalization", [self._in(i) for i in op.input[:5]], [self._out(op)], op,
                   epsilon=float(a.get("epsilon", 1e-5)))

    def _op_LRN(self, op, a):
        self._nchw(op, a)
        self._unused_extra_outputs(op)
        self._node("LRN", [self._in(op.input[0])], [self._out(op)], op, size=int(a["size"]),
                   alpha=float(a.get("alpha", 0)), beta=float(a.get("beta", 0)),
                   bias=float(a.get("bias", 1.0)))

    def _op_Sum(self, op, a):
        self._node("Sum", [self._in(i) for i in op.input], [self._out(op)], op)

    def _elementwise(self, op, a):
        x, y = self._in(op.input[0]), self._in(op.input[1])
        if a.get("broadcast", 0):
            rank_x, shape_y = len(self.shapes[op.input[0]]), self.shapes[op.input[1]]
            axis = a.get("axis", -1)
            if axis != -1:  # Caffe2 aligns B at `axis`; numpy aligns at the end: pad with 1s
                while len(shape_y) > 0 and shape_y[-1] == 1:  # Caffe2 ignores B's trailing 1s
                    shape_y = shape_y[:-1]
                target = tuple(shape_y) + (1,) * (rank_x - axis - len(shape_y))
                if target != tuple(self.shapes[op.input[1]]):
                    if op.input[1] in self.values:
                        y = self._const(op.input[1], self.values[op.input[1]].reshape(target))
                    else:
                        shaped = self._tmp(op.input[1])
                        self._node("Reshape", [y, self._const("shape", np.array(target, np.int64))],
                                   [shaped], op)
                        y = shaped
        self._node(op.type, [x, y], [self._out(op)], op)

    _op_Add = _op_Sub = _op_Mul = _op_Div = _elementwise

    def _op_Flatten(self, op, a):
        self._node("Flatten", [self._in(op.input[0])], [self._out(op)], op, axis=int(a.get("axis", 1)))

    def _op_Reshape(self, op, a):
        self._unused_extra_outputs(op)
        if len(op.input) > 1:  # the shape is a blob (int64, as Caffe2's Shape op makes it)
            shape = self._in(op.input[1])
        else:
            shape = self._const("shape", np.array(a["shape"], np.int64))
        self._node("Reshape", [self._in(op.input[0]), shape], [self._out(op)], op)

    def _op_Shape(self, op, a):
        if a.get("axes"):
            raise ExportError("to_onnx: Shape %r with axes is not supported" % op.output[0])
        self._node("Shape", [self._in(op.input[0])], [self._out(op)], op)

    def _op_Transpose(self, op, a):
        perm = a.get("axes") or list(reversed(range(len(self.shapes[op.input[0]]))))
        self._node("Transpose", [self._in(op.input[0])], [self._out(op)], op, perm=list(perm))

    def _op_Cast(self, op, a):
        to = a.get("to", 1)
        if to not in _ONNX_TYPES:
            raise ExportError("to_onnx: Cast %r to Caffe2 type %r has no ONNX type" % (op.output[0], to))
        self._node("Cast", [self._in(op.input[0])], [self._out(op)], op, to=_ONNX_TYPES[to])

    def _op_Scale(self, op, a):
        factor = self._const("scale", np.array(a.get("scale", 1.0), np.float32))
        self._node("Mul", [self._in(op.input[0]), factor], [self._out(op)], op)


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


# ---------------------------------------------------------------------- one call for tools/export.py
def export_model(out_dir, formats=("caffe2", "onnx"), model_dir=None, checkpoint=None,
                 num_classes=101, class_names=None, opset=None, verify=False):
    """Export a zoo-format model, or a training checkpoint's weights on it, to `out_dir`.

    model_dir: a Model Zoo folder (default: food101.zoo.locate_squeezenet()). checkpoint: a
    food101 training checkpoint (file or folder); its blobs are the weights, and the model is
    re-headed to `num_classes` (class_names: list or labels file; default Food-101's) to match.
    Without a checkpoint the folder is exported as it is. Writes out_dir/ (Caffe2 deploy folder)
    and/or out_dir/model.onnx; verify runs the ONNX reference evaluator against our executor.
    Returns {"caffe2": folder, "onnx": path, "onnx_max_diff": float, "note": str}.
    """
    from food101 import zoo as zoo_module
    result = {}
    if model_dir is None:
        location = zoo_module.locate_squeezenet()
        model, result["note"] = location.load(), location.note
    else:
        model = zoo_module.load(model_dir)
        result["note"] = str(model_dir)
    if checkpoint is not None:
        from food101.train.checkpoint import load_checkpoint
        payload = load_checkpoint(checkpoint)
        weights = {k: v for k, v in payload["blobs"].items() if hasattr(v, "shape")}
        if model.num_classes != num_classes:
            model = zoo_module.replace_classifier(model, num_classes, class_names=class_names)
        result["note"] += "; weights from %s (iteration %d)" % (payload["path"], payload["iteration"])
    else:
        weights = model.weights()
        if class_names is not None:
            model = model.copy(class_names=class_names if not isinstance(class_names, str)
                               else zoo_module.read_labels(class_names))
    unknown = set(formats) - {"caffe2", "onnx"}
    if unknown:
        raise ExportError("export: unknown format(s) %s; choose caffe2 and/or onnx" % sorted(unknown))
    os.makedirs(out_dir, exist_ok=True)
    if "caffe2" in formats:
        to_caffe2(model, out_dir, weights=weights)
        result["caffe2"] = out_dir
    if "onnx" in formats:
        path = os.path.join(out_dir, "model.onnx")
        proto = to_onnx(model, path, weights=weights, opset=opset)
        result["onnx"] = path
        result["onnx_opset"] = proto.opset_import[0].version
        if verify:
            result["onnx_max_diff"] = verify_onnx(proto, model, weights=weights)
    return result
