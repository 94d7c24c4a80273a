"""NetDef plumbing with one owner: caffe2.python.utils, the parts a NetDef needs.

Everything that builds or reads OperatorDef/NetDef fields goes through here, so the
conversion rules live in one place:

    MakeArgument(key, value)      Python value -> caffe2_pb2.Argument (core re-exports it)
    ArgsToDict(op.arg)            Arguments -> {name: Python value} (strings decoded)
    argument_value(arg)           the Python value of one Argument
    make_op(type, ins, outs, ...) one OperatorDef (core.CreateOperator adds NameScope/DeviceScope)
    set_arg(op, key, value)       replace one argument in place
    as_netdef(net)                a NetDef from a core.Net or a NetDef
    external_reads(netdef)        blobs a net reads before writing them (params, inputs, state)
    given_fill / given_fill_value an array <-> the GivenTensor*Fill op that recreates it

This module imports only the protobufs, so every other module of `food101.caffe2` (the op
registry, core, executor, workspace, ...) can build on it without a cycle.
"""
import functools
import pdb
import sys

import numpy as np
from google.protobuf import text_format
from google.protobuf.message import DecodeError, Message

from food101.caffe2.proto import caffe2_pb2

# Init-net ops whose `values` argument holds the tensor itself (Caffe2's GivenTensor*Fill).
GIVEN_FILLS = {
    "GivenTensorFill": np.float32,
    "GivenTensorDoubleFill": np.float64,
    "GivenTensorIntFill": np.int32,
    "GivenTensorInt64Fill": np.int64,
    "GivenTensorInt16Fill": np.int16,
    "GivenTensorBoolFill": np.bool_,
    "GivenTensorByteStringToUInt8Fill": np.uint8,
}


def as_netdef(net):
    """The caffe2_pb2.NetDef of a core.Net (its live proto), of a NetDef (itself) or of a
    serialized NetDef (bytes, as Caffe2's workspace functions also accept)."""
    if isinstance(net, bytes):
        netdef = caffe2_pb2.NetDef()
        netdef.ParseFromString(net)
        return netdef
    return net.Proto() if hasattr(net, "Proto") else net


def _scalar(value):
    return value.item() if isinstance(value, np.generic) else value


def _net_or_value(value):
    # a core.Net argument (e.g. a loop body) is stored as its NetDef, as in Caffe2
    return as_netdef(value) if hasattr(value, "Proto") else _scalar(value)


def MakeArgument(key, value):
    """A caffe2_pb2.Argument from a Python value, by the rules of Caffe2's utils.MakeArgument:
    float -> f, int/bool -> i, str/bytes -> s, NetDef -> n, other protobuf -> s (serialized),
    and lists of those -> floats / ints / strings / nets."""
    argument = caffe2_pb2.Argument()
    argument.name = key
    if isinstance(value, np.ndarray):
        if value.dtype == np.float32:
            argument.floats.extend(value.flatten().tolist())
            return argument
        value = value.flatten().tolist()
    value = _net_or_value(value)
    if isinstance(value, float):
        argument.f = value
    elif isinstance(value, (bool, int)):
        argument.i = int(value)
    elif isinstance(value, bytes):
        argument.s = value
    elif isinstance(value, str):
        argument.s = value.encode("utf-8")
    elif isinstance(value, caffe2_pb2.NetDef):
        argument.n.CopyFrom(value)
    elif isinstance(value, Message):
        argument.s = value.SerializeToString()
    elif hasattr(value, "__iter__"):
        items = [_net_or_value(v) for v in value]
        if all(isinstance(v, (bool, int)) for v in items):
            argument.ints.extend(int(v) for v in items)
        elif all(isinstance(v, (float, int)) and not isinstance(v, bool) for v in items):
            argument.floats.extend(float(v) for v in items)
        elif all(isinstance(v, (str, bytes)) for v in items):
            argument.strings.extend(v.encode("utf-8") if isinstance(v, str) else v for v in items)
        elif all(isinstance(v, caffe2_pb2.NetDef) for v in items):
            argument.nets.extend(items)
        elif all(isinstance(v, Message) for v in items):
            argument.strings.extend(v.SerializeToString() for v in items)
        else:
            raise ValueError("argument %r: cannot store a list mixing %s"
                             % (key, sorted({type(v).__name__ for v in items})))
    else:
        raise ValueError("argument %r: cannot store %r of type %s"
                         % (key, value, type(value).__name__))
    return argument


def argument_value(arg):
    """The Python value of one caffe2_pb2.Argument (Caffe2 sets exactly one field)."""
    if arg.HasField("f"):
        return arg.f
    if arg.HasField("i"):
        return arg.i
    if arg.HasField("s"):
        return _text(arg.s)
    if arg.HasField("n"):
        return arg.n
    if len(arg.floats):
        return list(arg.floats)
    if len(arg.ints):
        return list(arg.ints)
    if len(arg.strings):
        return [_text(s) for s in arg.strings]
    if len(arg.nets):
        return list(arg.nets)
    return []  # an empty repeated argument


def _text(raw):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def ArgsToDict(args):
    """{name: value} of a list of caffe2_pb2.Arguments (an OperatorDef's `arg`).

    As Caffe2's utils.ArgsToDict, but values are plain Python: strings are decoded from UTF-8
    (bytes that are not UTF-8 stay bytes) and repeated fields become lists."""
    return {a.name: argument_value(a) for a in args}


def make_op(op_type, inputs, outputs, name="", device_option=None, arg=(), **args):
    """One caffe2_pb2.OperatorDef with the blob names as given (no NameScope, no DeviceScope:
    core.CreateOperator adds those). Keyword arguments whose value is None are left out, so
    the op's default applies; `arg` is a list of ready-made Arguments, stored first."""
    op = caffe2_pb2.OperatorDef(type=op_type, input=[str(i) for i in inputs],
                                output=[str(o) for o in outputs], name=name)
    if device_option is not None:
        op.device_option.CopyFrom(device_option)
    op.arg.extend(arg)
    for key, value in args.items():
        if value is not None:
            op.arg.append(MakeArgument(key, value))
    return op


def set_arg(op, key, value):
    """Replace one argument of `op` in place (where it stands), or append it."""
    new = MakeArgument(key, value)
    for arg in op.arg:
        if arg.name == key:
            arg.CopyFrom(new)
            return
    op.arg.append(new)


def external_reads(netdef):
    """Blobs `netdef` reads before (or without) writing them, in first-use order: its params,
    fed inputs and state."""
    produced, reads = set(), []
    for op in as_netdef(netdef).op:
        for name in op.input:
            if name not in produced and name not in reads:
                reads.append(name)
        produced.update(op.output)
    return reads


def given_fill(name, array):
    """A GivenTensorFill-family op that recreates `array` (the zoo's init-net format)."""
    array = np.asarray(array)
    if array.dtype == np.float32 or array.dtype.kind == "f" and array.dtype != np.float64:
        op_type, values = "GivenTensorFill", array.astype(np.float32).ravel().tolist()
    elif array.dtype == np.float64:
        op_type, values = "GivenTensorDoubleFill", array.ravel().tolist()
    elif array.dtype == np.int64:
        op_type, values = "GivenTensorInt64Fill", array.ravel().tolist()
    elif array.dtype == np.bool_:
        op_type, values = "GivenTensorBoolFill", array.astype(np.int32).ravel().tolist()
    elif array.dtype.kind in "iu":
        op_type, values = "GivenTensorIntFill", array.astype(np.int32).ravel().tolist()
    else:
        raise TypeError("blob %r: cannot write dtype %s into an init net" % (name, array.dtype))
    op = make_op(op_type, [], [name], shape=list(array.shape))
    values_arg = caffe2_pb2.Argument(name="values")
    if op_type in ("GivenTensorFill", "GivenTensorDoubleFill"):
        values_arg.floats.extend(values)
    else:
        values_arg.ints.extend(int(v) for v in values)
    op.arg.append(values_arg)
    return op


def given_fill_value(op):
    """The array a GivenTensor*Fill op creates, read from its arguments (no execution)."""
    args = ArgsToDict(op.arg)
    dtype = GIVEN_FILLS[op.type]
    shape = tuple(args.get("shape", ()))
    values = np.asarray(args.get("values", []), dtype=dtype)
    if values.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError("%s %r: shape %s needs %d values, has %d" % (
            op.type, op.output[0], list(shape), int(np.prod(shape)), values.size))
    return values.reshape(shape)


__all__ = ["ArgsToDict", "GIVEN_FILLS", "MakeArgument", "argument_value", "as_netdef", "external_reads",
           "given_fill", "given_fill_value", "make_op", "set_arg"]


# --------------------------------------------------------------------------------------
# The rest of caffe2.python.utils that scripts import (numpy <-> TensorProto, proto files,
# layouts, debugging helpers).
# --------------------------------------------------------------------------------------
_DT = caffe2_pb2.TensorProto
# numpy dtype -> (TensorProto data_type, field, storage dtype). int64 arrays become INT32, as
# Caffe2's `arr.dtype == np.int` test made them (np.int is Python's int: int64 on Linux).
_NUMPY_TO_PROTO = {
    np.dtype(np.float32): (_DT.FLOAT, "float_data", float),
    np.dtype(np.float64): (_DT.DOUBLE, "double_data", np.float64),
    np.dtype(np.int64): (_DT.INT32, "int32_data", int),
    np.dtype(np.int32): (_DT.INT32, "int32_data", int),
    np.dtype(np.int16): (_DT.INT16, "int32_data", np.int16),
    np.dtype(np.uint16): (_DT.UINT16, "int32_data", np.uint16),
    np.dtype(np.int8): (_DT.INT8, "int32_data", np.int8),
    np.dtype(np.uint8): (_DT.UINT8, "int32_data", np.uint8),
}
# data_type -> (field, numpy dtype of the result); INT32 comes back as int64 (np.int), as in Caffe2
_PROTO_TO_NUMPY = {
    _DT.FLOAT: ("float_data", np.float32), _DT.DOUBLE: ("double_data", np.float64),
    _DT.INT32: ("int32_data", np.int64), _DT.INT16: ("int32_data", np.int16),
    _DT.UINT16: ("int32_data", np.uint16), _DT.INT8: ("int32_data", np.int8),
    _DT.UINT8: ("int32_data", np.uint8),
}


def NumpyArrayToCaffe2Tensor(arr, name=None):
    """A TensorProto of `arr` (float32/64, int64/32/16/8, uint16/8), as Caffe2's utils builds
    it; other dtypes raise RuntimeError as in Caffe2 (proto.numpy_to_tensor covers them all)."""
    arr = np.asarray(arr)
    if arr.dtype not in _NUMPY_TO_PROTO:
        raise RuntimeError("Numpy data type not supported yet: %s (NumpyArrayToCaffe2Tensor takes "
                           "%s)" % (arr.dtype, ", ".join(str(d) for d in _NUMPY_TO_PROTO)))
    data_type, field, cast = _NUMPY_TO_PROTO[arr.dtype]
    tensor = caffe2_pb2.TensorProto(dims=arr.shape, data_type=data_type)
    if name:
        tensor.name = name
    getattr(tensor, field).extend(cast(v) for v in arr.reshape(-1).tolist())
    return tensor


def Caffe2TensorToNumpyArray(tensor):
    """The values of a TensorProto as numpy, shaped by dims (INT32 as int64, as in Caffe2)."""
    if tensor.data_type not in _PROTO_TO_NUMPY:
        raise RuntimeError("Tensor data type not supported yet: %s (Caffe2TensorToNumpyArray "
                           "reads FLOAT, DOUBLE, INT32, INT16, UINT16, INT8, UINT8)"
                           % tensor.data_type)
    field, dtype = _PROTO_TO_NUMPY[tensor.data_type]
    return np.asarray(getattr(tensor, field), dtype=dtype).reshape(tuple(tensor.dims))


def CaffeBlobToNumpyArray(blob):
    """A Caffe (v1) BlobProto's data as float32: num/channels/height/width or shape.dim."""
    shape = (blob.num, blob.channels, blob.height, blob.width) if blob.num != 0 else tuple(blob.shape.dim)
    return np.asarray(blob.data, dtype=np.float32).reshape(shape)


def OpAlmostEqual(op_a, op_b, ignore_fields=None):
    """Two ops are equal except for the fields named in `ignore_fields`."""
    ignore = ignore_fields or []
    ignore = [ignore] if isinstance(ignore, str) else list(ignore)

    def cleaned(op):
        copy = type(op)()
        copy.CopyFrom(op)
        for field in ignore:
            copy.ClearField(field)
        return copy
    return cleaned(op_a) == cleaned(op_b)


def TryReadProtoWithClass(cls, s):
    """`s` (text or binary protobuf) parsed as `cls`; DecodeError when it is neither."""
    obj = cls()
    try:
        text_format.Parse(s, obj)
        return obj
    except (text_format.ParseError, UnicodeDecodeError, TypeError):
        obj = cls()
        obj.ParseFromString(s if isinstance(s, bytes) else s.encode("utf-8"))
        return obj


def GetContentFromProto(obj, function_map):
    """function_map[type(obj)](obj) for the first class that is exactly obj's type."""
    for cls, func in function_map.items():
        if type(obj) is cls:
            return func(obj)
    return None


def GetContentFromProtoString(s, function_map):
    for cls, func in function_map.items():
        try:
            return func(TryReadProtoWithClass(cls, s))
        except DecodeError:
            continue
    raise DecodeError("Cannot find a fit protobuffer class.")


def ConvertProtoToBinary(proto_class, filename, out_filename):
    """Convert a text protobuf file of `proto_class` to binary."""
    with open(filename) as fh:
        proto = TryReadProtoWithClass(proto_class, fh.read())
    with open(out_filename, "wb") as fh:
        fh.write(proto.SerializeToString())


def NHWC2NCHW(tensor):
    if tensor.ndim < 1:
        raise ValueError("NHWC2NCHW needs an array with at least 1 dimension")
    return tensor.transpose((0, tensor.ndim - 1) + tuple(range(1, tensor.ndim - 1)))


def NCHW2NHWC(tensor):
    if tensor.ndim < 2:
        raise ValueError("NCHW2NHWC needs an array with at least 2 dimensions")
    return tensor.transpose((0,) + tuple(range(2, tensor.ndim)) + (1,))


def EnumClassKeyVals(cls):
    """{NAME: value} for the upper-case string attributes of a class (duplicates are an error)."""
    if not isinstance(cls, type):
        raise TypeError("EnumClassKeyVals needs a class, got %r" % (cls,))
    enum = {}
    for key in dir(cls):
        value = getattr(cls, key)
        if key == key.upper() and isinstance(value, str):
            if value in enum.values():
                raise ValueError("Failed to resolve %s as Enum: duplicate entries %s=%s" % (cls, key, value))
            enum[key] = value
    return enum


def raiseIfNotEqual(a, b, msg):
    if a != b:
        raise Exception("{}. {} != {}".format(msg, a, b))


class DebugMode:
    """DebugMode.run(main): an unhandled exception drops into pdb's post-mortem debugger."""

    @classmethod
    def run(cls, func):
        try:
            return func()
        except KeyboardInterrupt:
            raise
        except Exception:  # noqa: BLE001 - the point is to debug any failure
            print('Entering interactive debugger. Type "bt" to print the full stacktrace.')
            print(sys.exc_info()[1])
            pdb.post_mortem()
            sys.exit(1)


def debug(f):
    """Decorator: run `f` under DebugMode."""
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return DebugMode.run(lambda: f(*args, **kwargs))
    return wrapper


__all__ += ["Caffe2TensorToNumpyArray", "CaffeBlobToNumpyArray", "ConvertProtoToBinary", "DebugMode",
            "EnumClassKeyVals", "GetContentFromProto", "GetContentFromProtoString", "NCHW2NHWC",
            "NHWC2NCHW", "NumpyArrayToCaffe2Tensor", "OpAlmostEqual", "TryReadProtoWithClass",
            "debug", "raiseIfNotEqual"]

