"""Read Caffe files: .prototxt (text format) and .caffemodel (binary), V1 and V2 layers.

    read_net("deploy.prototxt")        -> caffe_pb2.NetParameter (V1 `layers` upgraded to `layer`)
    read_solver("solver.prototxt")     -> caffe_pb2.SolverParameter
    read_caffemodel("w.caffemodel")    -> caffe_pb2.NetParameter with the weights
    blob_array(blob)                   -> numpy array (BlobProto `shape`, or legacy num/channels/height/width)

Text goes through protobuf's own text_format with the project's Caffe schema. Real files carry
fields of Caffe forks that BVLC's schema does not know (e.g. `transform_param { color: true }`):
a field inside `transform_param` only changes augmentation, so it is dropped with one warning
naming the layer and the field; an unknown field anywhere else could change the arithmetic, so it
is refused with an error naming the file, line, layer and field.
"""
import logging
import os
import re

import numpy as np
from google.protobuf import text_format
from google.protobuf.message import DecodeError

from food101.caffe2.errors import Caffe2Error
from food101.interop.caffe import caffe_pb2

log = logging.getLogger(__name__)

# Messages whose unknown (fork) fields are harmless to drop: they only steer data augmentation.
IGNORABLE_IN = {"caffe.TransformationParameter": "data augmentation of a Caffe fork; not applied"}

_UNKNOWN_FIELD = re.compile(r'(\d+):(\d+) : Message type "([\w.]+)" has no field named "(\w+)"')


class CaffeFormatError(Caffe2Error, ValueError):
    """A Caffe file that cannot be read or translated as it is; the message says where and why."""


def read_text(path, message, dropped=None):
    """Parse a text-format Caffe file into `message` (NetParameter or SolverParameter)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CaffeFormatError("cannot read Caffe file %s: %s" % (path, e.strerror or e)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CaffeFormatError("%s: not a text-format Caffe file: byte 0x%02x at offset %d is not "
                               "UTF-8 (a damaged or binary file? a .caffemodel is binary)"
                               % (path, data[e.start], e.start)) from None
    return parse_text(text, message, path, dropped)


def parse_text(text, message, path="<text>", dropped=None):
    """text_format.Merge (Caffe's own parser merges too: a repeated singular field keeps the last
    value), dropping unknown fields of augmentation messages: each dropped field is appended to
    `dropped` as (layer name, message type, field) when the caller passes a list (it reports
    them itself, e.g. once per run however often the file is read), else logged as a warning."""
    report = dropped is None
    dropped = [] if dropped is None else dropped
    first = len(dropped)
    while True:
        try:
            text_format.Merge(text, message)
            break
        except text_format.ParseError as e:
            match = _UNKNOWN_FIELD.search(str(e))
            at = _offset(text, int(match.group(1))) + int(match.group(2)) - 1 if match else 0
            where = _layer_at(text, at) if match else None
            if not match or match.group(3) not in IGNORABLE_IN:
                detail = str(e)
                if match:
                    detail = "field %r is not in %s (BVLC caffe.proto); it is not a field this " \
                             "translator can ignore safely, so the file is refused" % (
                                 match.group(4), match.group(3).split(".")[-1])
                raise CaffeFormatError("%s%s: %s" % (path, " (layer %r)" % where if where else "",
                                                     detail)) from None
            owner, field = match.group(3), match.group(4)
            text = _drop_field(text, at, field, path)
            dropped.append((where, owner.split(".")[-1], field))
            message.Clear()
    for where, owner, field in (dropped[first:] if report else ()):
        log.warning("%s: layer %r: %s", path, where, dropped_field_note(owner, field))
    return message


def _offset(text, line):
    """Character offset of the start of 1-based `line`."""
    offset = 0
    for _ in range(line - 1):
        offset = text.index("\n", offset) + 1
    return offset


def _drop_field(text, start, field, path):
    """Blank out `field: value` or `field { ... }` starting at `start` (line numbers stay)."""
    rest = text[start:]
    scalar = re.match(r'%s\s*:\s*("(?:[^"\\]|\\.)*"|\'[^\']*\'|[^\s{}#]+)' % field, rest)
    if scalar:
        end = start + scalar.end()
    else:
        brace = re.match(r"%s\s*:?\s*\{" % field, rest)
        if not brace:
            raise CaffeFormatError("%s: cannot skip unknown field %r" % (path, field))
        depth, end = 1, start + brace.end()
        while depth and end < len(text):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
    return text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]


def _layer_at(text, offset):
    """The name of the layer whose block contains `offset` (first `name:` after `layer {`)."""
    starts = [m.start() for m in re.finditer(r"\blayers?\s*\{", text[:offset])]
    if not starts:
        return None
    name = re.search(r'\bname\s*:\s*"([^"]*)"', text[starts[-1]:])
    return name.group(1) if name else None


def dropped_field_note(owner, field):
    """What a dropped fork field means, for a caller that collected it (parse_text's `dropped`)."""
    return "%s field %r is not BVLC Caffe (%s): ignored" % (owner, field,
                                                            IGNORABLE_IN["caffe." + owner])


def read_net(path, dropped=None):
    """A net .prototxt -> NetParameter with V2 `layer`s (V1 `layers` upgraded); `dropped`: see
    parse_text."""
    return upgrade_v1(read_text(path, caffe_pb2.NetParameter(), dropped))


def read_solver(path):
    return read_text(path, caffe_pb2.SolverParameter())


def _read_bytes(path, what):
    """A binary Caffe file's bytes; an unreadable one is a CaffeFormatError naming it as `what`."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CaffeFormatError("cannot read %s %s: %s" % (what, path, e.strerror or e)) from None


def read_caffemodel(path):
    """A binary .caffemodel -> NetParameter with V2 `layer`s holding the blobs."""
    data = _read_bytes(path, "caffemodel")
    net = caffe_pb2.NetParameter()
    try:
        net.ParseFromString(data)
    except DecodeError as e:
        raise CaffeFormatError("%s is not a Caffe NetParameter (.caffemodel): %s (%d bytes; "
                               "truncated or not binary?)" % (path, e, len(data))) from None
    if not net.layer and not net.layers:
        raise CaffeFormatError("%s holds no layers: not a .caffemodel (a .prototxt is text; "
                               "pass it as the net)" % path)
    return upgrade_v1(net)


def read_mean_file(path):
    """A transform_param mean_file (binaryproto BlobProto, 1 x C x H x W) -> float32 C x H x W."""
    data = _read_bytes(path, "mean_file")
    blob = caffe_pb2.BlobProto()
    try:
        blob.ParseFromString(data)
    except DecodeError as e:
        raise CaffeFormatError("mean_file %s is not a Caffe BlobProto (.binaryproto): %s"
                               % (path, e)) from None
    blob_values = blob_array(blob, "mean_file %s" % path)
    mean = blob_values[0] if blob_values.ndim == 4 and blob_values.shape[0] == 1 else blob_values
    if mean.ndim != 3 or mean.shape[0] not in (1, 3) or mean.size == 0:
        raise CaffeFormatError("mean_file %s: a mean image is 1 x C x H x W with C 1 or 3, this "
                               "blob is %s" % (path, list(blob_values.shape)))
    return mean


def blob_array(blob, where="blob"):
    """BlobProto -> float32 array: `shape` if set, else legacy num/channels/height/width."""
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:
        shape = tuple(int(d) for d in (blob.num, blob.channels, blob.height, blob.width))
    data = np.asarray(blob.double_data if len(blob.double_data) else blob.data, dtype=np.float32)
    if data.size != int(np.prod(shape, dtype=np.int64)):
        raise CaffeFormatError("%s: shape %s needs %d values, the file has %d"
                               % (where, list(shape), int(np.prod(shape)), data.size))
    return data.reshape(shape)


# V1LayerParameter.LayerType -> V2 type string (Caffe's UpgradeV1LayerType).
_V1_TYPES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution", "DATA": "Data", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}
# V1 fields copied as they are (same name and message type in LayerParameter).
_V1_COPY = ("name", "bottom", "top", "include", "exclude", "blobs", "loss_weight",
            "accuracy_param", "argmax_param", "concat_param", "contrastive_loss_param",
            "convolution_param", "data_param", "dropout_param", "dummy_data_param",
            "eltwise_param", "exp_param", "hdf5_data_param", "hdf5_output_param",
            "hinge_loss_param", "image_data_param", "infogain_loss_param",
            "inner_product_param", "lrn_param", "memory_data_param", "mvn_param",
            "pooling_param", "power_param", "relu_param", "sigmoid_param", "softmax_param",
            "slice_param", "tanh_param", "threshold_param", "window_data_param",
            "transform_param", "loss_param")


def _is_repeated(descriptor):
    if hasattr(descriptor, "is_repeated"):  # protobuf >= 5.x
        return descriptor.is_repeated
    return descriptor.label == descriptor.LABEL_REPEATED


def upgrade_v1(net):
    """Move V1 `layers` into V2 `layer` in place (type enum -> string, blobs_lr/weight_decay ->
    param { lr_mult decay_mult }), as Caffe's UpgradeV1Net does; V2 nets are returned as is."""
    if not net.layers:
        return net
    if net.layer:
        raise CaffeFormatError("net %r mixes V1 `layers` and V2 `layer` entries; Caffe refuses "
                               "such a file too" % net.name)
    names = {v.number: v.name for v in caffe_pb2.V1LayerParameter.DESCRIPTOR
             .enum_types_by_name["LayerType"].values}
    for old in net.layers:
        new = net.layer.add()
        for field in _V1_COPY:
            descriptor = old.DESCRIPTOR.fields_by_name[field]
            if _is_repeated(descriptor):
                getattr(new, field).extend(getattr(old, field))
            elif old.HasField(field):
                value = getattr(old, field)
                if descriptor.message_type is not None:
                    getattr(new, field).CopyFrom(value)
                else:
                    setattr(new, field, value)
        type_name = names.get(old.type, str(old.type))
        if type_name not in _V1_TYPES:
            raise CaffeFormatError("V1 layer %r has type %s, which has no V2 equivalent"
                                   % (old.name, type_name))
        new.type = _V1_TYPES[type_name]
        for i in range(max(len(old.blobs_lr), len(old.weight_decay), len(old.param))):
            spec = new.param.add()
            if i < len(old.param):
                spec.name = old.param[i]
            if i < len(old.blobs_lr):
                spec.lr_mult = old.blobs_lr[i]
            if i < len(old.weight_decay):
                spec.decay_mult = old.weight_decay[i]
    del net.layers[:]
    return net
