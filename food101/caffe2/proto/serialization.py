"""Reading and writing Caffe2 protobufs: NetDef files and TensorProto <-> numpy.

Files: ``.pb`` is binary, ``.pbtxt``/``.prototxt``/``.pbtext``/``.txt`` is protobuf text format,
anything else is tried as binary and then as text. Every failure raises ``ProtobufParseError``
naming the file and the message type that was expected.

Tensors follow Caffe2's storage convention (caffe2.proto comments, blob_serialization.cc):
FLOAT -> float_data, DOUBLE -> double_data, INT64 -> int64_data, BYTE -> byte_data (uint8),
STRING -> string_data, and INT32/INT16/UINT16/INT8/UINT8/BOOL -> int32_data, FLOAT16 -> its
uint16 bit patterns in int32_data. ``raw_data`` (little endian) and ``byte_data`` holding the
raw bytes of a small integer type are read too.
"""
import os

import numpy as np
from google.protobuf import message as _message
from google.protobuf import text_format

from food101.caffe2.errors import Caffe2Error, ProtobufParseError
from food101.caffe2.proto import caffe2_pb2
from food101.fileio import write_bytes

TEXT_EXTENSIONS = (".pbtxt", ".prototxt", ".pbtext", ".txt")
BINARY_EXTENSIONS = (".pb",)

_DT = caffe2_pb2.TensorProto

# data_type -> (numpy dtype, TensorProto field holding the values).
_STORAGE = {
    _DT.FLOAT: (np.float32, "float_data"),
    _DT.DOUBLE: (np.float64, "double_data"),
    _DT.INT32: (np.int32, "int32_data"),
    _DT.INT16: (np.int16, "int32_data"),
    _DT.UINT16: (np.uint16, "int32_data"),
    _DT.INT8: (np.int8, "int32_data"),
    _DT.UINT8: (np.uint8, "int32_data"),
    _DT.BOOL: (np.bool_, "int32_data"),
    _DT.FLOAT16: (np.float16, "int32_data"),
    _DT.INT64: (np.int64, "int64_data"),
    _DT.BYTE: (np.uint8, "byte_data"),
    _DT.STRING: (object, "string_data"),
}

def numpy_dtype_of(data_type):
    """The numpy dtype a TensorProto data_type holds (object for STRING)."""
    try:
        return np.dtype(_STORAGE[data_type][0])
    except KeyError:
        raise Caffe2Error("TensorProto data_type %d has no numpy dtype" % data_type) from None


# numpy dtype -> the data_type numpy_to_tensor picks by default.
_DATA_TYPE_OF = {
    np.dtype(np.float32): _DT.FLOAT, np.dtype(np.float64): _DT.DOUBLE,
    np.dtype(np.int32): _DT.INT32, np.dtype(np.int16): _DT.INT16,
    np.dtype(np.uint16): _DT.UINT16, np.dtype(np.int8): _DT.INT8,
    np.dtype(np.uint8): _DT.UINT8, np.dtype(np.bool_): _DT.BOOL,
    np.dtype(np.float16): _DT.FLOAT16, np.dtype(np.int64): _DT.INT64,
}


# ------------------------------------------------------------------------------ files
def _is_text_path(path):
    return str(path).lower().endswith(TEXT_EXTENSIONS)


def _read_varint(data, pos):
    value = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise IndexError


def _diagnose_wire(data):
    """Why bytes fail to decode at the top level: 'truncated ...', 'not protobuf ...' or None."""
    pos = 0
    while pos < len(data):
        start, number = pos, None
        try:
            tag, pos = _read_varint(data, pos)
            wire_type, number = tag & 7, tag >> 3
            if number == 0 or wire_type not in (0, 1, 2, 5):
                return "not protobuf wire format (bad field tag at byte %d)" % start
            if wire_type == 0:
                _, pos = _read_varint(data, pos)
            elif wire_type == 2:
                size, pos = _read_varint(data, pos)
                pos += size
            else:
                pos += 8 if wire_type == 1 else 4
            if pos > len(data):
                raise IndexError
        except IndexError:
            field = "field %d" % number if number is not None else "a field tag"
            return "truncated: %s at byte %d runs past the end (%d bytes)" % (
                field, start, len(data))
    return None


def parse_proto(data, message_type, source="<bytes>", text=None):
    """Parse `data` (bytes) into a new `message_type`; text=None guesses binary, then text."""
    type_name = message_type.DESCRIPTOR.full_name
    if not data:
        raise ProtobufParseError("%s: empty file (0 bytes), expected a serialized %s"
                                 % (source, type_name))
    errors = []
    if text is not True:
        message = message_type()
        try:
            message.ParseFromString(data)
        except _message.DecodeError as e:
            reason = _diagnose_wire(data)
            errors.append("DecodeError: %s%s" % (e, "; " + reason if reason else ""))
        else:
            # Random bytes can decode as nothing but unknown fields; that is not a NetDef.
            if message.ListFields():
                return message
            errors.append("decoded as binary but holds no %s field" % type_name)
    if text is not False:
        try:
            return text_format.Parse(data.decode("utf-8"), message_type())
        except UnicodeDecodeError:
            errors.append("not UTF-8 text either")
        except text_format.ParseError as e:
            errors.append("text format ParseError: %s" % e)
    kind = {True: " in text format", False: ""}.get(text, "")
    raise ProtobufParseError("%s: not a %s protobuf%s (%s)"
                             % (source, type_name, kind, "; ".join(errors)))


def load_proto(path, message_type):
    """Read a binary or text protobuf file of `message_type` (format chosen by extension)."""
    path = os.fspath(path)
    with open(path, "rb") as fh:
        data = fh.read()
    if _is_text_path(path):
        text = True
    else:
        text = False if path.lower().endswith(BINARY_EXTENSIONS) else None
    return parse_proto(data, message_type, source=path, text=text)


def load_net(path):
    """Read a caffe2.NetDef from .pb (binary) or .pbtxt/.prototxt (text)."""
    return load_proto(path, caffe2_pb2.NetDef)


def save_net(proto, path):
    """Write any message (NetDef, TensorProtos, ...) atomically; text format for .pbtxt etc.

    The bytes go to a temporary file in the same folder, then os.replace, so a crash never
    leaves a half-written model behind.
    """
    path = os.fspath(path)
    if _is_text_path(path):
        data = text_format.MessageToString(proto).encode("utf-8")
    else:
        data = proto.SerializeToString()
    return write_bytes(path, data)


save_proto = save_net


# ------------------------------------------------------------------------------ tensors
def _label(tensor):
    return "TensorProto %r" % tensor.name if tensor.name else "unnamed TensorProto"


def tensor_to_numpy(tensor):
    """A TensorProto's values as a numpy array shaped by `dims` (STRING: object array of bytes)."""
    if tensor.HasField("segment"):
        raise Caffe2Error("%s holds only the chunk [%d, %d) of a larger tensor; reassemble the "
                          "chunks before converting" % (_label(tensor), tensor.segment.begin,
                                                        tensor.segment.end))
    if tensor.data_type not in _STORAGE:
        raise Caffe2Error("%s: data_type %s cannot be converted to numpy (supported: %s)" % (
            _label(tensor), _DT.DataType.Name(tensor.data_type)
            if tensor.data_type in _DT.DataType.values() else tensor.data_type,
            ", ".join(_DT.DataType.Name(t) for t in _STORAGE)))
    dtype, field = _STORAGE[tensor.data_type]
    shape = tuple(tensor.dims)
    if tensor.raw_data and tensor.data_type != _DT.STRING:
        values = np.frombuffer(tensor.raw_data, dtype=np.dtype(dtype).newbyteorder("<"))
        field = "raw_data"
    elif field == "string_data":
        values = np.empty(len(tensor.string_data), dtype=object)
        values[:] = list(tensor.string_data)
    elif field == "byte_data":
        values = np.frombuffer(tensor.byte_data, dtype=np.uint8)
    elif field == "int32_data" and tensor.byte_data and not tensor.int32_data:
        # caffe2_serialize_using_bytes_as_holder: small types stored as their raw bytes.
        values = np.frombuffer(tensor.byte_data, dtype=np.dtype(dtype).newbyteorder("<"))
        field = "byte_data"
    elif tensor.data_type == _DT.FLOAT16:
        values = np.asarray(tensor.int32_data, dtype=np.int32).astype(np.uint16).view(np.float16)
    else:
        values = np.asarray(getattr(tensor, field), dtype=dtype)
    count = int(np.prod(shape, dtype=np.int64))
    if values.size != count:
        raise Caffe2Error("%s: dims %s need %d values of %s but %s holds %d" % (
            _label(tensor), list(shape), count, _DT.DataType.Name(tensor.data_type), field,
            values.size))
    return values.astype(dtype, copy=False).reshape(shape)


def numpy_to_tensor(array, name=None, data_type=None):
    """A TensorProto holding `array` as Caffe2 serializes it.

    data_type picks the storage when the dtype alone does not (uint8 defaults to UINT8 in
    int32_data; pass TensorProto.BYTE for byte_data as Caffe2's image LMDBs use). Object/str/bytes
    arrays become STRING.
    """
    array = np.asarray(array)
    if data_type is None:
        if array.dtype.kind in "OSU":
            data_type = _DT.STRING
        elif array.dtype in _DATA_TYPE_OF:
            data_type = _DATA_TYPE_OF[array.dtype]
        else:
            raise Caffe2Error("numpy dtype %s of tensor %r has no Caffe2 TensorProto data type"
                              % (array.dtype, name))
    if data_type not in _STORAGE:
        raise Caffe2Error("tensor %r: data_type %s is not supported" % (name, data_type))
    tensor = caffe2_pb2.TensorProto(data_type=data_type, dims=array.shape)
    if name is not None:
        tensor.name = name
    dtype, field = _STORAGE[data_type]
    flat = array.reshape(-1)
    if field == "string_data":
        tensor.string_data.extend(v.encode("utf-8") if isinstance(v, str) else bytes(v)
                                  for v in flat.tolist())
    elif field == "byte_data":
        tensor.byte_data = flat.astype(np.uint8).tobytes()
    elif data_type == _DT.FLOAT16:
        tensor.int32_data.extend(flat.astype(np.float16).view(np.uint16).astype(np.int32).tolist())
    elif field == "int32_data":
        tensor.int32_data.extend(flat.astype(dtype).astype(np.int32).tolist())
    else:
        getattr(tensor, field).extend(flat.astype(dtype).tolist())
    return tensor
