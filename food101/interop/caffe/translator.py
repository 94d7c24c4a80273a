"""Caffe NetParameter (+ .caffemodel weights) -> Caffe2 NetDefs, one small converter per layer type.

    prototxt ─netfile.read_net─► NetParameter ─┐
                                                ├─ translate() ─► Translation: predict net ops,
    caffemodel ─netfile.read_caffemodel────────┘     parameters (given arrays, or fill ops from
                                                      Caffe's fillers), lr/decay multipliers,
                                                      weighted losses, data layers, notes

Layers are kept or dropped by Caffe's own `include`/`exclude` rules for the phase (TRAIN or
TEST). The ops, arguments and blob names are those of Caffe2's caffe_translator.py (parameters
`<top>_w`, `<top>_b`, BatchNorm's `<top>_scale/_bias/_mean/_var`, Scale's `<top>scale_w`), so a
translated deploy net is the Model Zoo's net; where Caffe2's translator stops (Eltwise PROD/MAX
and coefficients, Slice, Split, Power, ReLU's negative_slope, InnerProduct axis, BatchNorm
without pretrained statistics, weights from fillers) the translation goes on with the ops Caffe2
has. A layer type or field this module cannot honour is refused with a `CaffeFormatError` naming
the layer and field; a harmless one (an `engine` choice, a filler of a layer whose weights are
given) is ignored.
"""
import logging
import math
from collections import OrderedDict

import numpy as np

from food101.caffe2.utils import ArgsToDict, given_fill, make_op
from food101.caffe2.errors import closest
from food101.caffe2.proto import caffe2_pb2
from food101.interop.caffe import caffe_pb2
from food101.interop.converters import ConverterTable
from food101.interop.caffe.netfile import CaffeFormatError, blob_array

log = logging.getLogger(__name__)

CAFFE_LEGACY_POOLING = 3  # caffe2_legacy.proto LegacyPadding

# Converter table: Caffe layer type -> function(t, layer). A duplicate type is an error.
LAYERS = ConverterTable("caffe_translator", target="Caffe2")
layer_converter = LAYERS.converter


def supported_layers():
    return LAYERS.names()


class Param:
    """One learnable (or constant) blob: its value or the fill op that draws it, and Caffe's
    per-parameter multipliers."""

    def __init__(self, name, value=None, fill=None, lr_mult=1.0, decay_mult=1.0, layer=""):
        self.name, self.value, self.fill = name, value, fill
        self.lr_mult, self.decay_mult, self.layer = float(lr_mult), float(decay_mult), layer

    @property
    def shape(self):
        if self.value is not None:
            return tuple(self.value.shape)
        return tuple(ArgsToDict(self.fill.arg)["shape"])

    def init_op(self):
        return given_fill(self.name, self.value) if self.value is not None else self.fill


class Translation:
    """What `translate` made of one Caffe net for one phase."""

    def __init__(self, name, phase, is_test):
        self.name, self.phase, self.is_test = name, phase, is_test
        self.trainer = False             # the trainer's translation (see translate)
        self.log_notes = True            # log each note as it is made (see translate)
        self.ops = []
        self.params = OrderedDict()      # blob -> Param
        self.inputs = OrderedDict()      # blob -> shape (Input layers, input_shape, input_dim)
        self.data_layers = []            # Data/ImageData layers (LayerParameter) of this phase
        self.losses = []                 # (blob, loss_weight)
        self.outputs = []                # Accuracy blobs and other tops nobody reads
        self.bn_layers = []              # (layer name, SpatialBN op, use_global_stats given)
        self.notes = []                  # (layer, message): what was ignored or adjusted
        self.layer_of_op = []            # Caffe layer name of each op
        self.input_dims = None
        self.data_shapes = {}            # Data layer top -> N x C x H x W when crop_size is not it
        self.current_blobs = None        # pretrained blobs of the layer being converted
        self.shapes = {}                 # blob -> shape at batch 1 (None: unknown)
        self._labels = set()

    # ------------------------------------------------------------ building blocks
    def op(self, layer, op_type, inputs, outputs, **args):
        op = make_op(op_type, inputs, outputs, **args)
        self.ops.append(op)
        self.layer_of_op.append(layer.name)
        return op

    def param(self, layer, index, name, value, default_filler=None, shape=None):
        """The layer's index-th parameter blob: the pretrained `value`, else its filler."""
        spec = layer.param[index] if index < len(layer.param) else caffe_pb2.ParamSpec()
        if value is None:
            if shape is None:
                raise CaffeFormatError("layer %r (%s): no pretrained blob %d and no shape to fill "
                                       "it" % (layer.name, layer.type, index))
            value = None
            fill = filler_op(name, shape, default_filler, layer)
        else:
            fill = None
        self.params[name] = Param(name, value, fill, spec.lr_mult, spec.decay_mult, layer.name)
        return name

    def constant(self, layer, name, value):
        """A blob the net reads that is not learnt (lr_mult 0, decay_mult 0)."""
        self.params[name] = Param(name, np.asarray(value, np.float32), None, 0.0, 0.0, layer.name)
        return name

    # ------------------------------------------------------------ shapes (for filler-made params)
    def dim(self, blob, axis):
        """Size of `blob` along `axis` (batch 1), from Caffe's shape rules (`caffe_shapes`)."""
        shape = self.shapes.get(blob)
        if shape is None:
            raise CaffeFormatError(
                "the shape of %r is needed to create parameters from fillers, but it is unknown: "
                "give the net's input shape (Input layer, input_shape, input_dims=..., or "
                "data_shapes=... for a Data layer) or a caffemodel with the weights" % blob)
        return int(shape[axis])

    def channels(self, blob):
        return self.dim(blob, 1)

    def features(self, blob, axis):
        self.dim(blob, 0)
        return int(np.prod(self.shapes[blob][axis:]))

    def note(self, layer, message, level=logging.WARNING):
        self.notes.append((layer.name, message))
        if self.log_notes:  # else the caller shows `notes` itself (the trainer's start-up lines)
            log.log(level, "layer %r (%s): %s", layer.name, layer.type, message)

    # ------------------------------------------------------------ results
    def predict_net(self):
        net = caffe2_pb2.NetDef(name=self.name)
        net.op.extend(self.ops)
        produced = set()
        external = list(self.inputs)
        for op in self.ops:
            external += [b for b in op.input if b not in produced and b not in external
                         and b not in self.params]
            produced.update(op.output)
        net.external_input.extend(external + list(self.params))
        read = {b for op in self.ops for b in op.input}
        outputs = [b for op in self.ops for b in op.output if b not in read and not b.startswith("_")]
        net.external_output.extend(list(OrderedDict.fromkeys(outputs)))
        return net

    def init_net(self):
        net = caffe2_pb2.NetDef(name=self.name + "_init")
        net.op.extend(p.init_op() for p in self.params.values())
        net.external_output.extend(self.params)
        return net

    def tensor_protos(self):
        """The pretrained parameters as TensorProtos (Caffe2's TranslateModel return value)."""
        protos = caffe2_pb2.TensorProtos()
        for p in self.params.values():
            if p.value is None:
                raise CaffeFormatError("layer %r: parameter %r has no pretrained value (the "
                                       "caffemodel has no blobs for this layer)" % (p.layer, p.name))
            t = protos.protos.add(name=p.name, data_type=caffe2_pb2.TensorProto.FLOAT)
            t.dims.extend(p.value.shape)
            t.float_data.extend(p.value.astype(np.float32).ravel().tolist())
        return protos


# ---------------------------------------------------------------------------- driver
def should_include(layer, state):
    """Caffe's StateMeetsRule / include-exclude logic."""
    def meets(rule):
        if rule.HasField("phase") and rule.phase != state.phase:
            return False
        if rule.HasField("min_level") and state.level < rule.min_level:
            return False
        if rule.HasField("max_level") and state.level > rule.max_level:
            return False
        stages = set(state.stage)
        if any(s not in stages for s in rule.stage) or any(s in stages for s in rule.not_stage):
            return False
        return True
    if layer.include:
        return any(meets(rule) for rule in layer.include)
    return not any(meets(rule) for rule in layer.exclude)


def translate(caffe_net, pretrained_net=None, phase=None, is_test=None, net_state=None,
              input_dims=None, data_shapes=None, trainer=False, log_notes=True):
    """Translate `caffe_net` (NetParameter) for one phase; weights from `pretrained_net`
    (a NetParameter from a .caffemodel) by layer name, else from the layers' fillers.

    phase: "TRAIN"/"TEST" or caffe_pb2.TRAIN/TEST (default TEST). is_test (default: phase is TEST)
    puts Dropout and BatchNorm in inference mode. input_dims: the shape of the net's input;
    data_shapes: {Data layer top: N x C x H x W} where a Data layer's images are not
    3 x crop_size x crop_size (only needed to size parameters drawn from fillers).
    trainer: the trainer's translation, with Caffe's training semantics where Caffe2's translator
    writes ops that differ: SoftmaxWithLoss becomes Caffe2's fused SoftmaxWithLoss op (its
    gradient is prob - onehot, as Caffe's layer, where the unfused Softmax + LabelCrossEntropy
    gives ~0 gradient once a label's probability is below the 1e-20 clamp), and a training
    BatchNorm keeps Caffe's running statistics (CaffeBatchNormStats: its scale factor, the
    m/(m-1) variance correction) instead of SpatialBN's momentum average. By default the
    translation is op for op Caffe2's translator's. log_notes: also log each note (ignored
    fork fields, ...) as it is made; the notes are in the result's `notes` either way."""
    state = caffe_pb2.NetState()
    if net_state is not None:
        state.CopyFrom(net_state)
    if phase is not None:
        state.phase = caffe_pb2.Phase.Value(phase) if isinstance(phase, str) else phase
    is_test = (state.phase == caffe_pb2.TEST) if is_test is None else bool(is_test)
    t = Translation(caffe_net.name or "caffe_net", caffe_pb2.Phase.Name(state.phase), is_test)
    t.trainer = bool(trainer)
    t.log_notes = bool(log_notes)
    t.data_shapes.update(data_shapes or {})
    _net_inputs(caffe_net, t, input_dims)
    t.input_dims = input_dims
    for blob, shape in t.inputs.items():
        t.shapes[blob] = [1] + list(shape[1:]) if shape else None
    weights = _weights_by_layer(pretrained_net)
    available = list(t.inputs)  # blobs that exist so far: inputs, then each layer's tops
    for layer in caffe_net.layer:
        if not should_include(layer, state):
            continue
        _check_bottoms(layer, available)
        if layer.type not in LAYERS:
            near = closest(layer.type, LAYERS.names())
            raise CaffeFormatError("layer %r has type %r, which this translator does not support "
                                   "(refused)%s; supported: %s" % (
                                       layer.name, layer.type,
                                       "; did you mean %s?" % ", ".join(near) if near else "",
                                       ", ".join(supported_layers())))
        convert = LAYERS.lookup(layer.type)
        blobs = weights.get(layer.name)
        t.current_blobs = [blob_array(b, "layer %r blob %d" % (layer.name, i))
                           for i, b in enumerate(blobs)] if blobs else None
        if t.current_blobs:
            check_blob_shapes(t, layer, t.current_blobs)
        convert(t, layer)
        available += [top for top in layer.top if top not in available]
        caffe_shapes(layer, t.shapes)
        for top, weight in zip(layer.top, layer.loss_weight):
            if weight and layer.type not in ("SoftmaxWithLoss", "EuclideanLoss"):
                t.losses.append((top, float(weight)))
    return t


def _check_bottoms(layer, available):
    """Caffe's "Unknown bottom blob": every bottom must be an input or an earlier layer's top."""
    for i, bottom in enumerate(layer.bottom):
        if bottom not in available:
            near = closest(bottom, available)
            raise CaffeFormatError(
                "layer %r (%s): bottom %r (bottom %d) is not produced by any earlier layer nor an "
                "input%s" % (layer.name, layer.type, bottom, i,
                             "; did you mean %s?" % " or ".join(repr(n) for n in near) if near
                             else " (blobs so far: %s)" % ", ".join(available[-8:])))


def _expected_blob_shapes(t, layer):
    """What the prototxt implies for each of `layer`'s parameter blobs: (name, shape) pairs,
    None for a dimension the translator does not know (the input's channels, without an input
    shape), and a short account of the parameters used; None for layers without parameters."""
    bottom = t.shapes.get(layer.bottom[0]) if layer.bottom else None
    channels = bottom[1] if bottom and len(bottom) > 1 else None
    if layer.type in ("Convolution", "Deconvolution"):
        p = layer.convolution_param
        kernel = list(p.kernel_size) or [0]
        kh = p.kernel_h if p.HasField("kernel_h") else kernel[0]
        kw = p.kernel_w if p.HasField("kernel_w") else kernel[-1]
        if layer.type == "Convolution":
            weight = [p.num_output, channels // p.group if channels else None, kh, kw]
        else:
            weight = [channels, p.num_output // p.group, kh, kw]
        why = "num_output %d, kernel %dx%d%s%s" % (
            p.num_output, kh, kw, ", group %d" % p.group if p.group != 1 else "",
            ", %d input channels" % channels if channels else "")
        return ([("weights", weight)] + ([("bias", [p.num_output])] if p.bias_term else [])), why
    if layer.type == "InnerProduct":
        p = layer.inner_product_param
        k = int(np.prod(bottom[p.axis:])) if bottom else None
        weight = [k, p.num_output] if p.transpose else [p.num_output, k]
        why = "num_output %d%s" % (p.num_output, ", %d inputs" % k if k else "")
        return ([("weights", weight)] + ([("bias", [p.num_output])] if p.bias_term else [])), why
    if layer.type == "BatchNorm":
        return [("mean", [channels]), ("variance", [channels]), ("scale factor", [1]),
                ("scale", [channels]), ("bias", [channels])], \
            "%s input channels" % (channels or "the")
    if layer.type == "Scale" and len(layer.bottom) == 1:
        size = bottom[layer.scale_param.axis] if bottom else None
        return [("scale", [size]), ("bias", [size])], "%s channels" % (size or "the input's")
    if layer.type == "PReLU":
        size = 1 if layer.prelu_param.channel_shared else channels
        return [("slope", [size])], "%s channels" % (size or "the input's")
    return None


def check_blob_shapes(t, layer, arrays):
    """Each pretrained blob of `layer` against what its prototxt parameters imply, as Caffe's
    Net::CopyTrainedLayersFrom does ("Cannot copy param N weights from layer X; shape
    mismatch"): a CaffeFormatError naming the layer, the blob and both shapes."""
    for i, array in enumerate(arrays):
        if array.size == 0:
            raise CaffeFormatError("layer %r (%s): caffemodel blob %d has shape %s and no values "
                                   "(a damaged or placeholder caffemodel?)"
                                   % (layer.name, layer.type, i, list(array.shape)))
    expected = _expected_blob_shapes(t, layer)
    if expected is None:
        return
    specs, why = expected
    if len(arrays) > len(specs) and not (layer.type == "BatchNorm" and len(arrays) == 5):
        raise CaffeFormatError("layer %r (%s): the caffemodel has %d blobs, the prototxt implies "
                               "%d (%s)" % (layer.name, layer.type, len(arrays), len(specs),
                                            ", ".join(n for n, _ in specs)))
    for i, (array, (what, shape)) in enumerate(zip(arrays, specs)):
        got = list(array.shape)
        while len(got) > len(shape) and got[0] == 1:  # old num/channels/height/width blobs
            got = got[1:]
        if len(got) != len(shape) or any(e is not None and e != g for e, g in zip(shape, got)):
            raise CaffeFormatError(
                "layer %r (%s): caffemodel blob %d (%s) has shape %s but the prototxt implies %s "
                "(%s); Caffe refuses it too (\"Cannot copy param %d weights from layer '%s'; "
                "shape mismatch\"): translate with the prototxt these weights were trained with"
                % (layer.name, layer.type, i, what, list(array.shape),
                   [("?" if e is None else e) for e in shape], why, i, layer.name))


def caffe_shapes(layer, shapes):
    """Record the shapes of `layer`'s tops in `shapes` (batch 1), by Caffe's rules; unknown
    input shapes give unknown outputs."""
    ins = [shapes.get(b) for b in layer.bottom]
    kind = layer.type
    out = None
    if kind in ("Input", "Data", "ImageData"):
        return
    if any(s is None for s in ins):
        out = None
    elif kind in ("Convolution", "Deconvolution", "Pooling"):
        out = _window_shape(layer, ins[0])
    elif kind == "InnerProduct":
        p = layer.inner_product_param
        out = list(ins[0][:p.axis]) + [p.num_output]
    elif kind == "Concat":
        axis = layer.concat_param.concat_dim if layer.concat_param.HasField("concat_dim") \
            else layer.concat_param.axis
        out = list(ins[0])
        out[axis] = sum(s[axis] for s in ins)
    elif kind == "Flatten":
        axis = layer.flatten_param.axis
        out = list(ins[0][:axis]) + [int(np.prod(ins[0][axis:]))]
    elif kind == "Reshape":
        dims = list(layer.reshape_param.shape.dim)
        out = [ins[0][i] if d == 0 else d for i, d in enumerate(dims)]
        if -1 in out:
            known = int(np.prod([d for d in out if d != -1]))
            out[out.index(-1)] = int(np.prod(ins[0])) // max(known, 1)
    elif kind == "Slice":
        p = layer.slice_param
        axis = p.slice_dim if p.HasField("slice_dim") else p.axis
        points = [0] + list(p.slice_point) + [ins[0][axis]] if p.slice_point else \
            [ins[0][axis] * i // len(layer.top) for i in range(len(layer.top) + 1)]
        for top, (a, b) in zip(layer.top, zip(points, points[1:])):
            shapes[top] = list(ins[0][:axis]) + [b - a] + list(ins[0][axis + 1:])
        return
    elif kind in ("SoftmaxWithLoss", "Accuracy", "EuclideanLoss"):
        out = []
    else:  # elementwise and activation layers keep the first bottom's shape
        out = list(ins[0])
    for top in layer.top:
        shapes[top] = out


def _window_shape(layer, x):
    if layer.type == "Pooling":
        p = layer.pooling_param
        if p.global_pooling:
            return list(x[:2]) + [1, 1]
        kernel = [p.kernel_h, p.kernel_w] if p.HasField("kernel_h") else [p.kernel_size] * 2
        stride = [p.stride_h, p.stride_w] if p.HasField("stride_h") else [p.stride] * 2
        pad = [p.pad_h, p.pad_w] if p.HasField("pad_h") else [p.pad] * 2
        out = []
        for size, k, s, q in zip(x[2:], kernel, stride, pad):
            if p.round_mode == caffe_pb2.PoolingParameter.CEIL:
                n = int(math.ceil((size + 2 * q - k) / float(s))) + 1
                if q and (n - 1) * s >= size + q:  # the last window may not start in the padding
                    n -= 1
            else:
                n = (size + 2 * q - k) // s + 1
            out.append(n)
        return list(x[:2]) + out
    p = layer.convolution_param
    two = lambda values, default: (list(values) * 2)[:2] if len(values) else [default] * 2  # noqa: E731
    kernel = [p.kernel_h, p.kernel_w] if p.HasField("kernel_h") else two(p.kernel_size, 1)
    stride = [p.stride_h, p.stride_w] if p.HasField("stride_h") else two(p.stride, 1)
    pad = [p.pad_h, p.pad_w] if p.HasField("pad_h") else two(p.pad, 0)
    dilation = two(p.dilation, 1)
    out = []
    for size, k, s, q, d in zip(x[2:], kernel, stride, pad, dilation):
        extent = d * (k - 1) + 1
        if layer.type == "Deconvolution":
            out.append(s * (size - 1) + extent - 2 * q)
        else:
            out.append((size + 2 * q - extent) // s + 1)
    return [x[0], p.num_output] + out


def _weights_by_layer(pretrained_net):
    if pretrained_net is None:
        return {}
    weights = {}
    for layer in list(pretrained_net.layer) + list(pretrained_net.layers):
        if layer.name in weights and layer.blobs:
            raise CaffeFormatError("the caffemodel has two layers named %r with weights" % layer.name)
        if layer.blobs:
            weights[layer.name] = list(layer.blobs)
    return weights


def _net_inputs(net, t, input_dims):
    """Net-level inputs: `input` + `input_shape`/`input_dim` (old deploy files)."""
    for i, name in enumerate(net.input):
        if input_dims:
            shape = list(input_dims)
        elif len(net.input_shape) > i:
            shape = list(net.input_shape[i].dim)
        elif len(net.input_dim) >= 4 * (i + 1):
            shape = list(net.input_dim[4 * i:4 * i + 4])
        else:
            shape = None
        t.inputs[name] = shape


def _blobs(t, layer, count):
    """The pretrained blobs of `layer` (None when the caffemodel has none)."""
    blobs = t.current_blobs
    if blobs is not None and len(blobs) < count:
        raise CaffeFormatError("layer %r (%s): the caffemodel has %d blobs, %d expected"
                               % (layer.name, layer.type, len(blobs), count))
    return blobs


def check_fields(t, layer, param_name, supported, ignored=()):
    """Refuse a set field of `layer.<param_name>` that the converter does not implement."""
    if not param_name or not layer.HasField(param_name):
        return
    for field, _ in getattr(layer, param_name).ListFields():
        if field.name in supported:
            continue
        if field.name in ignored:
            t.note(layer, "%s.%s is ignored (%s)" % (param_name, field.name, ignored[field.name]))
            continue
        raise CaffeFormatError("layer %r (%s): %s.%s is not supported by the translator (refused)"
                               % (layer.name, layer.type, param_name, field.name))


_FILLER_IGNORED = {"weight_filler": "weights come from the caffemodel or the filler",
                   "bias_filler": "weights come from the caffemodel or the filler",
                   "engine": "an implementation choice; torch kernels run",
                   "num_output": "implied by the weights"}


# ---------------------------------------------------------------------------- fillers
def filler_op(name, shape, filler, layer):
    """Caffe's FillerParameter -> a Caffe2 fill op drawing the same distribution."""
    filler = filler if filler is not None else caffe_pb2.FillerParameter()
    shape = [int(d) for d in shape]
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    fan_out = shape[0] * (int(np.prod(shape[2:])) if len(shape) > 2 else 1)
    norm = {caffe_pb2.FillerParameter.FAN_IN: fan_in, caffe_pb2.FillerParameter.FAN_OUT: fan_out,
            caffe_pb2.FillerParameter.AVERAGE: (fan_in + fan_out) / 2.0}[filler.variance_norm]
    kind = filler.type
    if kind == "constant":
        return make_op("ConstantFill", [], [name], shape=shape, value=float(filler.value))
    if kind == "gaussian":
        if filler.sparse != -1:
            raise CaffeFormatError("layer %r: a sparse gaussian filler is not supported" % layer.name)
        return make_op("GaussianFill", [], [name], shape=shape, mean=float(filler.mean),
                             std=float(filler.std))
    if kind == "uniform":
        return make_op("UniformFill", [], [name], shape=shape, min=float(filler.min),
                             max=float(filler.max))
    if kind == "xavier":
        bound = math.sqrt(3.0 / norm)
        return make_op("UniformFill", [], [name], shape=shape, min=-bound, max=bound)
    if kind == "msra":
        return make_op("GaussianFill", [], [name], shape=shape, mean=0.0,
                             std=math.sqrt(2.0 / norm))
    raise CaffeFormatError("layer %r: filler type %r is not supported (constant, gaussian, "
                           "uniform, xavier, msra)" % (layer.name, kind))


# ---------------------------------------------------------------------------- converters
def _base(t, layer, op_type, extra_outputs=(), **args):
    return t.op(layer, op_type, list(layer.bottom), list(layer.top) + list(extra_outputs), **args)


@layer_converter("Input")
def _input(t, layer):
    check_fields(t, layer, "input_param", {"shape"})
    input_dims = t.input_dims
    shapes = list(layer.input_param.shape)
    for i, top in enumerate(layer.top):
        shape = shapes[i] if i < len(shapes) else (shapes[-1] if shapes else None)
        t.inputs[top] = list(input_dims) if input_dims else (
            list(shape.dim) if shape is not None else None)
        t.shapes[top] = [1] + t.inputs[top][1:] if t.inputs[top] else None


@layer_converter("Data", "ImageData")
def _data(t, layer):
    """Data layers feed the net from outside (the trainer's reader); their tops are inputs."""
    t.data_layers.append(layer)
    tops = list(layer.top)
    crop = layer.transform_param.crop_size
    channels = 1 if layer.type == "ImageData" and not layer.image_data_param.is_color else 3
    shape = t.data_shapes.get(tops[0]) or ([1, channels, crop, crop] if crop else None)
    t.inputs.setdefault(tops[0], shape)
    t.shapes[tops[0]] = [1] + list(shape[1:]) if shape else None
    for top in tops[1:]:
        t.inputs.setdefault(top, [1])
        t.shapes[top] = [1]
        t._labels.add(top)


def _window(t, layer, param, caffe_op_args, pooling=False):
    """Caffe's kernel/stride/pad (repeated in ConvolutionParameter, scalar in Pooling) -> args,
    as Caffe2's translator spells them."""
    def one(values, what, default):
        if pooling:
            return values
        if len(values) > 2:
            raise CaffeFormatError("layer %r: %d values of %s; only 2-D is supported"
                                   % (layer.name, len(values), what))
        return list(values) if len(values) else [default]
    stride, pad, kernel = (one(param.stride, "stride", 1), one(param.pad, "pad", 0),
                           one(param.kernel_size, "kernel_size", 0))
    if param.HasField("stride_h") or param.HasField("stride_w"):
        caffe_op_args.update(stride_h=param.stride_h, stride_w=param.stride_w)
    elif pooling or len(stride) == 1:
        caffe_op_args["stride"] = stride if pooling else stride[0]
    else:
        caffe_op_args.update(stride_h=stride[0], stride_w=stride[1])
    if param.HasField("pad_h") or param.HasField("pad_w"):
        if param.pad_h == param.pad_w:
            caffe_op_args["pad"] = param.pad_h
        else:
            caffe_op_args.update(pad_t=param.pad_h, pad_b=param.pad_h, pad_l=param.pad_w,
                                 pad_r=param.pad_w)
    elif pooling or len(pad) == 1:
        caffe_op_args["pad"] = pad if pooling else pad[0]
    else:
        caffe_op_args.update(pad_t=pad[0], pad_b=pad[0], pad_l=pad[1], pad_r=pad[1])
    if param.HasField("kernel_h") or param.HasField("kernel_w"):
        caffe_op_args.update(kernel_h=param.kernel_h, kernel_w=param.kernel_w)
    elif pooling or len(kernel) == 1:
        caffe_op_args["kernel"] = kernel if pooling else kernel[0]
    else:
        caffe_op_args.update(kernel_h=kernel[0], kernel_w=kernel[1])
    return caffe_op_args


_CONV_FIELDS = {"num_output", "bias_term", "pad", "kernel_size", "stride", "dilation", "pad_h",
                "pad_w", "kernel_h", "kernel_w", "stride_h", "stride_w", "group",
                "weight_filler", "bias_filler"}


def _conv_shape(t, layer, transpose=False):
    """The weight shape from the prototxt (only needed when there are no pretrained blobs)."""
    p = layer.convolution_param
    kernel = list(p.kernel_size) or [0]
    kh = p.kernel_h if p.HasField("kernel_h") else kernel[0]
    kw = p.kernel_w if p.HasField("kernel_w") else kernel[-1]
    channels = t.channels(layer.bottom[0]) if hasattr(t, "channels") else None
    if channels is None:
        raise CaffeFormatError("layer %r (%s): no pretrained weights and the input channels of "
                               "%r are unknown; pass a caffemodel or the input shape"
                               % (layer.name, layer.type, layer.bottom[0]))
    if transpose:
        return [channels, p.num_output // p.group, kh, kw]
    return [p.num_output, channels // p.group, kh, kw]


@layer_converter("Convolution")
def _convolution(t, layer):
    check_fields(t, layer, "convolution_param", _CONV_FIELDS, {"engine": _FILLER_IGNORED["engine"]})
    p = layer.convolution_param
    blobs = _blobs(t, layer, 2 if p.bias_term else 1)
    top = layer.top[0]
    args = _window(t, layer, p, {})
    inputs = list(layer.bottom) + [t.param(layer, 0, top + "_w", blobs[0] if blobs else None,
                                           p.weight_filler if p.HasField("weight_filler") else None,
                                           None if blobs else _conv_shape(t, layer))]
    if p.bias_term:
        inputs.append(t.param(layer, 1, top + "_b", blobs[1].ravel() if blobs else None,
                              p.bias_filler if p.HasField("bias_filler") else None, [p.num_output]))
    if p.group != 1:
        args["group"] = p.group
    if len(p.dilation) == 1:
        args["dilation"] = p.dilation[0]
    elif len(p.dilation) == 2:
        args.update(dilation_h=p.dilation[0], dilation_w=p.dilation[1])
    t.op(layer, "Conv", inputs, list(layer.top), **args)


@layer_converter("Deconvolution")
def _deconvolution(t, layer):
    check_fields(t, layer, "convolution_param", _CONV_FIELDS - {"dilation"},
                 {"engine": _FILLER_IGNORED["engine"]})
    p = layer.convolution_param
    blobs = _blobs(t, layer, 2 if p.bias_term else 1)
    top = layer.top[0]
    args = _window(t, layer, p, {})
    inputs = list(layer.bottom) + [t.param(layer, 0, top + "_w", blobs[0] if blobs else None,
                                           p.weight_filler if p.HasField("weight_filler") else None,
                                           None if blobs else _conv_shape(t, layer, True))]
    if p.bias_term:
        inputs.append(t.param(layer, 1, top + "_b", blobs[1].ravel() if blobs else None,
                              p.bias_filler if p.HasField("bias_filler") else None, [p.num_output]))
    if p.group != 1:
        args["group"] = p.group
    args["order"] = "NCHW"
    t.op(layer, "ConvTranspose", inputs, list(layer.top), **args)


@layer_converter("Pooling")
def _pooling(t, layer):
    check_fields(t, layer, "pooling_param", {"pool", "pad", "pad_h", "pad_w", "kernel_size",
                                             "kernel_h", "kernel_w", "stride", "stride_h",
                                             "stride_w", "global_pooling", "round_mode"},
                 {"engine": _FILLER_IGNORED["engine"]})
    p = layer.pooling_param
    if p.pool == caffe_pb2.PoolingParameter.MAX:
        op_type = "MaxPool"
    elif p.pool == caffe_pb2.PoolingParameter.AVE:
        op_type = "AveragePool"
    else:
        raise CaffeFormatError("layer %r: pooling_param.pool STOCHASTIC has no Caffe2 op (refused)"
                               % layer.name)
    args = _window(t, layer, p, {}, pooling=True)
    args["order"] = "NCHW"
    if p.round_mode == caffe_pb2.PoolingParameter.CEIL:  # Caffe's ceil-mode output size
        args["legacy_pad"] = CAFFE_LEGACY_POOLING
    if p.global_pooling:
        args["global_pooling"] = 1
    if p.pool == caffe_pb2.PoolingParameter.MAX and not p.global_pooling and p.stride == 1 \
            and _kernel(p) > 1 and not p.pad:  # a pool that does not downsample: a Keras port?
        t.note(layer, "overlapping max pool: stride 1 with kernel_size %d keeps the size "
                      "(Keras/most frameworks default stride = pool size)" % _kernel(p),
               logging.INFO)
    _base(t, layer, op_type, **args)


def _kernel(p):
    return p.kernel_h if p.HasField("kernel_h") else p.kernel_size


@layer_converter("ReLU")
def _relu(t, layer):
    check_fields(t, layer, "relu_param", {"negative_slope"}, {"engine": _FILLER_IGNORED["engine"]})
    if layer.relu_param.negative_slope:
        _base(t, layer, "LeakyRelu", alpha=float(layer.relu_param.negative_slope))
    else:
        _base(t, layer, "Relu")


@layer_converter("Sigmoid")
def _sigmoid(t, layer):
    check_fields(t, layer, "sigmoid_param", set(), {"engine": _FILLER_IGNORED["engine"]})
    _base(t, layer, "Sigmoid")


@layer_converter("TanH")
def _tanh(t, layer):
    check_fields(t, layer, "tanh_param", set(), {"engine": _FILLER_IGNORED["engine"]})
    _base(t, layer, "Tanh")


@layer_converter("PReLU")
def _prelu(t, layer):
    check_fields(t, layer, "prelu_param", {"filler"})
    blobs = _blobs(t, layer, 1)
    slope = t.param(layer, 0, layer.top[0] + "_Slope", blobs[0] if blobs else None,
                    _constant_filler(0.25), None if blobs else [t.channels(layer.bottom[0])])
    t.op(layer, "PRelu", [layer.bottom[0], slope], list(layer.top))


@layer_converter("InnerProduct")
def _inner_product(t, layer):
    check_fields(t, layer, "inner_product_param", {"num_output", "bias_term", "weight_filler",
                                                   "bias_filler", "axis", "transpose"})
    p = layer.inner_product_param
    blobs = _blobs(t, layer, 2 if p.bias_term else 1)
    top = layer.top[0]
    if blobs:
        w = blobs[0]
        if w.ndim == 4:  # old-style Caffe blob 1 x 1 x N x K
            if list(w.shape[:2]) != [1, 1]:
                raise CaffeFormatError("layer %r: a 4-D InnerProduct blob must be 1 x 1 x N x K, "
                                       "got %s" % (layer.name, list(w.shape)))
            w = w.reshape(w.shape[-2], w.shape[-1])
        elif w.ndim != 2:
            raise CaffeFormatError("layer %r: InnerProduct weight has shape %s; expected 2-D"
                                   % (layer.name, list(w.shape)))
        shape = None
    else:
        w, k = None, t.features(layer.bottom[0], p.axis)
        shape = [k, p.num_output] if p.transpose else [p.num_output, k]
    weight = t.param(layer, 0, top + "_w", w,
                     p.weight_filler if p.HasField("weight_filler") else None, shape)
    if p.bias_term:
        bias = t.param(layer, 1, top + "_b", blobs[1].ravel() if blobs else None,
                       p.bias_filler if p.HasField("bias_filler") else None, [p.num_output])
    else:
        bias = t.constant(layer, top + "_b", np.zeros(p.num_output, np.float32))
    args = {"axis": p.axis} if p.axis != 1 else {}
    t.op(layer, "FCTransposed" if p.transpose else "FC", [layer.bottom[0], weight, bias],
         list(layer.top), **args)


def _constant_filler(value):
    return caffe_pb2.FillerParameter(type="constant", value=value)


@layer_converter("Dropout")
def _dropout(t, layer):
    check_fields(t, layer, "dropout_param", {"dropout_ratio"})
    args = {"ratio": layer.dropout_param.dropout_ratio}
    if t.is_test:
        args["is_test"] = 1
    _base(t, layer, "Dropout", ["_" + layer.top[0] + "_mask"], **args)


@layer_converter("LRN")
def _lrn(t, layer):
    check_fields(t, layer, "lrn_param", {"local_size", "alpha", "beta", "k", "norm_region"},
                 {"engine": _FILLER_IGNORED["engine"]})
    p = layer.lrn_param
    if p.norm_region != caffe_pb2.LRNParameter.ACROSS_CHANNELS:
        raise CaffeFormatError("layer %r: lrn_param.norm_region WITHIN_CHANNEL has no Caffe2 LRN "
                               "(refused)" % layer.name)
    _base(t, layer, "LRN", ["_" + layer.top[0] + "_scale"], size=int(p.local_size),
          alpha=float(p.alpha), beta=float(p.beta), bias=float(p.k), order="NCHW")


@layer_converter("Concat")
def _concat(t, layer):
    check_fields(t, layer, "concat_param", {"axis", "concat_dim"})
    p = layer.concat_param
    axis = p.concat_dim if p.HasField("concat_dim") else p.axis
    args = {"order": "NCHW"} if axis == 1 else {"axis": axis}
    _base(t, layer, "Concat", ["_" + layer.top[0] + "_dims"], **args)


@layer_converter("Eltwise")
def _eltwise(t, layer):
    check_fields(t, layer, "eltwise_param", {"operation", "coeff", "stable_prod_grad"})
    p = layer.eltwise_param
    bottoms, top = list(layer.bottom), layer.top[0]
    if p.coeff and p.operation != caffe_pb2.EltwiseParameter.SUM:
        raise CaffeFormatError("layer %r: eltwise_param.coeff is only for SUM (Caffe refuses it "
                               "too)" % layer.name)
    if p.operation == caffe_pb2.EltwiseParameter.SUM:
        if not p.coeff or all(c == 1 for c in p.coeff):
            t.op(layer, "Sum", bottoms, [top])
            return
        if len(p.coeff) != len(bottoms):
            raise CaffeFormatError("layer %r: %d coefficients for %d bottoms"
                                   % (layer.name, len(p.coeff), len(bottoms)))
        inputs = []
        for i, (bottom, c) in enumerate(zip(bottoms, p.coeff)):
            inputs += [bottom, t.constant(layer, "%s_coeff%d" % (top, i), np.array([c], np.float32))]
        t.op(layer, "WeightedSum", inputs, [top])
    elif p.operation == caffe_pb2.EltwiseParameter.MAX:
        t.op(layer, "Max", bottoms, [top])
    else:  # PROD: Caffe2's Mul is binary
        current = bottoms[0]
        for i, bottom in enumerate(bottoms[1:]):
            out = top if i == len(bottoms) - 2 else "%s_prod%d" % (top, i)
            t.op(layer, "Mul", [current, bottom], [out])
            current = out


@layer_converter("BatchNorm")
def _batch_norm(t, layer):
    """SpatialBN; Caffe's three blobs are mean*s, var*s and s (the scale factor): divided out.
    In training, Caffe uses batch statistics unless use_global_stats is true.

    Caffe2's translator keeps SpatialBN's own running average (momentum=moving_average_fraction,
    biased variance, no scale factor). The trainer's translation keeps Caffe's instead: s as the
    blob <top>_scale_factor and a CaffeBatchNormStats op before the SpatialBN (which reads the
    input before an in-place BatchNorm overwrites it); the SpatialBN gets momentum 1 so that it
    only normalises. <top>_mean/_var stay what a test-mode SpatialBN reads (Caffe's acc / s)."""
    check_fields(t, layer, "batch_norm_param", {"use_global_stats", "moving_average_fraction",
                                                "eps"})
    p = layer.batch_norm_param
    top = layer.top[0]
    blobs = _blobs(t, layer, 3)
    global_stats = p.use_global_stats if p.HasField("use_global_stats") else t.phase == "TEST"
    is_test = bool(t.is_test or global_stats)
    factor = 0.0  # Caffe's statistics of a net without weights start at 0 (so does s)
    if blobs:
        factor = float(blobs[2].ravel()[0])
        scale = 0.0 if factor == 0 else 1.0 / factor  # Caffe's rule for a zero factor
        mean, var = blobs[0].ravel() * scale, blobs[1].ravel() * scale
        channels = mean.size
        if len(blobs) > 3:  # NVCaffe / IntelCaffe fuse the following Scale: 5 blobs
            gamma, beta = blobs[3].ravel(), blobs[4].ravel()
        else:
            gamma, beta = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    else:
        channels = t.channels(layer.bottom[0])
        mean, var = np.zeros(channels, np.float32), np.ones(channels, np.float32)
        gamma, beta = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    # Caffe's BatchNorm has no affine part: scale/bias are constants; mean/var are not learnt
    names = [t.constant(layer, top + suffix, value) for suffix, value in
             (("_scale", gamma), ("_bias", beta), ("_mean", mean), ("_var", var))]
    outputs = [top]
    momentum = float(p.moving_average_fraction)
    if not is_test:
        outputs += [top + "_mean", top + "_var", top + "_saved_mean", top + "_saved_var"]
        if t.trainer:
            stats = [top + "_mean", top + "_var",
                     t.constant(layer, top + "_scale_factor", np.array([factor], np.float32))]
            t.op(layer, "CaffeBatchNormStats", [layer.bottom[0]] + stats, stats,
                 moving_average_fraction=momentum, order="NCHW")
            momentum = 1.0
    op = t.op(layer, "SpatialBN", [layer.bottom[0]] + names, outputs, is_test=int(is_test),
              epsilon=float(p.eps), order="NCHW", momentum=momentum)
    t.bn_layers.append((layer.name, op, p.HasField("use_global_stats")))


@layer_converter("Scale")
def _scale(t, layer):
    check_fields(t, layer, "scale_param", {"axis", "num_axes", "filler", "bias_term",
                                           "bias_filler"})
    p = layer.scale_param
    top = layer.top[0]
    if len(layer.bottom) == 2:
        t.op(layer, "Mul", list(layer.bottom), [top], axis=p.axis, broadcast=1)
        return
    if p.num_axes != 1:
        raise CaffeFormatError("layer %r: scale_param.num_axes=%d; only 1 (per-channel) is "
                               "supported" % (layer.name, p.num_axes))
    blobs = t.current_blobs
    has_bias = len(blobs) == 2 if blobs else p.bias_term
    channels = None if blobs else t.dim(layer.bottom[0], p.axis)
    weight = t.param(layer, 0, top + "scale_w", blobs[0].ravel() if blobs else None,
                     p.filler if p.HasField("filler") else _constant_filler(1.0), [channels])
    if not has_bias:
        t.op(layer, "Mul", [layer.bottom[0], weight], [top], axis=p.axis, broadcast=1)
        return
    bias = t.param(layer, 1, top + "scale_b", blobs[1].ravel() if blobs else None,
                   p.bias_filler if p.HasField("bias_filler") else None, [channels])
    t.op(layer, "Mul", [layer.bottom[0], weight], [top + "_internal"], axis=p.axis, broadcast=1)
    t.op(layer, "Add", [top + "_internal", bias], [top], axis=p.axis, broadcast=1)


@layer_converter("Softmax")
def _softmax(t, layer):
    check_fields(t, layer, "softmax_param", {"axis"}, {"engine": _FILLER_IGNORED["engine"]})
    args = {"axis": layer.softmax_param.axis} if layer.softmax_param.axis != 1 else {}
    _base(t, layer, "Softmax", **args)


@layer_converter("SoftmaxWithLoss")
def _softmax_with_loss(t, layer):
    check_fields(t, layer, "softmax_param", {"axis"})
    check_fields(t, layer, "loss_param", {"normalization", "normalize"})
    if layer.softmax_param.axis != 1:
        raise CaffeFormatError("layer %r: softmax_param.axis != 1 is not supported" % layer.name)
    scores, label = layer.bottom[0], layer.bottom[1]
    prob = scores + "_translator_autogen_softmax"
    if t.trainer:
        t.op(layer, "SoftmaxWithLoss", [scores, label], [prob, layer.top[0]])
    else:
        xent = scores + "_translator_autogen_xent"
        t.op(layer, "Softmax", [scores], [prob])
        t.op(layer, "LabelCrossEntropy", [prob, label], [xent])
        t.op(layer, "AveragedLoss", [xent], [layer.top[0]])
    weight = layer.loss_weight[0] if layer.loss_weight else 1.0
    t.losses.append((layer.top[0], float(weight)))


@layer_converter("Accuracy")
def _accuracy(t, layer):
    check_fields(t, layer, "accuracy_param", {"top_k", "axis"})
    p = layer.accuracy_param
    if p.axis != 1:
        raise CaffeFormatError("layer %r: accuracy_param.axis=%d is not supported" % (layer.name,
                                                                                     p.axis))
    if len(layer.top) > 1:
        raise CaffeFormatError("layer %r: per-class accuracy (a second top) is not supported"
                               % layer.name)
    # Caffe's Accuracy reads N x C x 1 x 1 scores as N x C; Caffe2's needs them flat
    flat = layer.bottom[0] + "_flat"
    t.op(layer, "Flatten", [layer.bottom[0]], [flat])
    args = {"top_k": p.top_k} if p.top_k != 1 else {}
    t.op(layer, "Accuracy", [flat, layer.bottom[1]], list(layer.top), **args)
    t.outputs.append(layer.top[0])


@layer_converter("Flatten")
def _flatten(t, layer):
    check_fields(t, layer, "flatten_param", {"axis", "end_axis"})
    p = layer.flatten_param
    if p.end_axis != -1:
        raise CaffeFormatError("layer %r: flatten_param.end_axis=%d is not supported"
                               % (layer.name, p.end_axis))
    if p.axis == 0:
        _base(t, layer, "FlattenToVec")
    else:
        _base(t, layer, "Flatten", **({"axis": p.axis} if p.axis != 1 else {}))


@layer_converter("Reshape")
def _reshape(t, layer):
    check_fields(t, layer, "reshape_param", {"shape"})
    t.op(layer, "Reshape", [layer.bottom[0]], [layer.top[0], "_" + layer.bottom[0] + "_dims"],
         shape=list(layer.reshape_param.shape.dim))


@layer_converter("Split")
def _split(t, layer):
    for top in layer.top:
        if top != layer.bottom[0]:
            t.op(layer, "Copy", [layer.bottom[0]], [top])


@layer_converter("Slice")
def _slice(t, layer):
    check_fields(t, layer, "slice_param", {"axis", "slice_point", "slice_dim"})
    p = layer.slice_param
    axis = p.slice_dim if p.HasField("slice_dim") else p.axis
    args = {"axis": axis}
    if p.slice_point:
        total = t.dim(layer.bottom[0], axis)
        points = [0] + list(p.slice_point) + [total]
        args["split"] = [b - a for a, b in zip(points, points[1:])]
    t.op(layer, "Split", [layer.bottom[0]], list(layer.top), **args)


@layer_converter("Power")
def _power(t, layer):
    """y = (shift + scale * x) ^ power."""
    check_fields(t, layer, "power_param", {"power", "scale", "shift"})
    p = layer.power_param
    current, top = layer.bottom[0], layer.top[0]
    steps = [s for s in ("scale", "shift", "power") if getattr(p, s) != (0 if s == "shift" else 1)]
    if not steps:
        t.op(layer, "Copy", [current], [top])
        return
    for i, step in enumerate(steps):
        out = top if i == len(steps) - 1 else "%s_%s" % (top, step)
        if step == "scale":
            t.op(layer, "Scale", [current], [out], scale=float(p.scale))
        elif step == "shift":
            shift = t.constant(layer, top + "_shift", np.array([p.shift], np.float32))
            t.op(layer, "Add", [current, shift], [out], broadcast=1)
        else:
            t.op(layer, "Pow", [current], [out], exponent=float(p.power))
        current = out
