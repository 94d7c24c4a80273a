"""Blobs <-> serialized `BlobProto`s, as Caffe2's Save/Load write them into a DB.

One DB record per chunk of a tensor (blob_serialization.cc):

    key   "<blob name>#%<chunk id>"
    value BlobProto{name, type: "Tensor", tensor: TensorProto{dims (the whole tensor), data_type,
          the chunk's values, name, device_detail, segment {begin, end} (flat element range)}}

`chunk_size` elements per chunk (Caffe2's default: 1,000,000; 0 = one chunk); an empty tensor
is one chunk with segment [0, 0). A `bytes`/`str` blob is one record keyed by the bare name
with type "std::string" and the bytes in `content`. Values go through the TensorProto storage
rules of `proto.serialization` (FLOAT -> float_data, UINT8/BOOL/... -> int32_data, ...).

`BlobAssembler` reverses it: records in any order (Caffe2 writes chunks from several threads)
are gathered per blob, and a blob whose chunks do not cover the tensor is an error.
"""
import numpy as np
import torch

from food101.caffe2.errors import Caffe2Error
from food101.caffe2.proto import caffe2_pb2, numpy_to_tensor, tensor_to_numpy

DEFAULT_CHUNK_SIZE = 1000000   # FLAGS_caffe2_tensor_chunk_size
NO_CHUNKING = 0
CHUNK_SEPARATOR = "#%"
TENSOR_TYPE = "Tensor"
STRING_TYPE = "std::string"


def blob_to_numpy(name, value):
    """A workspace blob as numpy + its DeviceOption (device_detail); other objects are an error."""
    device = caffe2_pb2.DeviceOption(device_type=caffe2_pb2.CPU)
    if isinstance(value, torch.Tensor):
        if value.device.type == "cuda":
            device = caffe2_pb2.DeviceOption(device_type=caffe2_pb2.CUDA,
                                             device_id=value.device.index or 0)
        if value.dtype == torch.bfloat16:
            raise Caffe2Error("blob %r is bfloat16, which Caffe2's TensorProto cannot hold; "
                              "Cast it to float first" % name)
        return value.detach().cpu().numpy(), device
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "O" and not all(isinstance(v, (bytes, str)) for v in value.flat):
            raise Caffe2Error("blob %r is an object array holding other things than strings; "
                              "Caffe2 serializes tensors and strings" % name)
        return value, device
    raise Caffe2Error("blob %r holds a %s, which cannot be serialized (Caffe2 serializes "
                      "tensors and strings)" % (name, type(value).__name__))


def serialize_blob(name, value, chunk_size=DEFAULT_CHUNK_SIZE):
    """[(key, serialized BlobProto bytes)] for one blob."""
    if isinstance(value, (bytes, str)):
        proto = caffe2_pb2.BlobProto(name=name, type=STRING_TYPE,
                                     content=value.encode("utf-8") if isinstance(value, str) else value)
        return [(name, proto.SerializeToString())]
    array, device = blob_to_numpy(name, value)
    full = numpy_to_tensor(array, name=name)
    flat = array.reshape(-1)
    size = flat.size
    if chunk_size is None or chunk_size < 0:
        chunk_size = DEFAULT_CHUNK_SIZE
    step = size if chunk_size == NO_CHUNKING else chunk_size
    records = []
    for chunk_id, begin in enumerate(range(0, max(size, 1), max(step, 1))):
        end = min(begin + step, size)
        tensor = numpy_to_tensor(flat[begin:end], name=name, data_type=full.data_type)
        del tensor.dims[:]
        tensor.dims.extend(array.shape)
        tensor.device_detail.CopyFrom(device)
        tensor.segment.begin, tensor.segment.end = begin, end
        proto = caffe2_pb2.BlobProto(name=name, type=TENSOR_TYPE, tensor=tensor)
        records.append(("%s%s%d" % (name, CHUNK_SEPARATOR, chunk_id), proto.SerializeToString()))
    return records


def parse_blob_proto(key, value, source):
    proto = caffe2_pb2.BlobProto()
    try:
        proto.ParseFromString(value)
    except Exception as e:  # noqa: BLE001 - protobuf raises several types
        raise Caffe2Error("%s: record %r is not a serialized BlobProto (%s)" % (source, key, e)) from None
    return proto


def blob_name_of_key(key):
    key = key.decode("utf-8") if isinstance(key, bytes) else key
    return key.split(CHUNK_SEPARATOR, 1)[0]


class BlobAssembler:
    """Collects records of one or more blobs; `finish()` -> {name: (value, device_detail)}."""

    def __init__(self, source):
        self.source = source
        self._parts = {}

    def add(self, key, value, name=None):
        """Add one record; `name` renames the blob (Load's strip/add_prefix)."""
        proto = parse_blob_proto(key, value, self.source)
        name = name if name is not None else (proto.name or blob_name_of_key(key))
        self._parts.setdefault(name, []).append(proto)
        return name

    def names(self):
        return list(self._parts)

    def finish(self):
        return {name: self._assemble(name, parts) for name, parts in self._parts.items()}

    def _assemble(self, name, parts):
        first = parts[0]
        if first.type == STRING_TYPE or (not first.HasField("tensor") and first.content):
            return first.content, None
        if first.type not in (TENSOR_TYPE, "") or not first.HasField("tensor"):
            raise Caffe2Error("%s: blob %r has type %r; Load reads Tensor and std::string blobs"
                              % (self.source, name, first.type))
        whole = first.tensor
        shape = tuple(whole.dims)
        if len(parts) == 1 and not whole.HasField("segment"):
            return tensor_to_numpy(whole), whole.device_detail
        count = int(np.prod(shape, dtype=np.int64))
        flat = None
        covered = 0
        for proto in parts:
            tensor = proto.tensor
            if not tensor.HasField("segment"):
                raise Caffe2Error("%s: blob %r is stored twice" % (self.source, name))
            chunk = caffe2_pb2.TensorProto()
            chunk.CopyFrom(tensor)
            chunk.ClearField("segment")
            del chunk.dims[:]
            chunk.dims.append(tensor.segment.end - tensor.segment.begin)
            values = tensor_to_numpy(chunk)
            if flat is None:
                flat = np.empty(count, dtype=values.dtype)
            if tensor.segment.end > count or tuple(tensor.dims) != shape:
                raise Caffe2Error("%s: a chunk of blob %r does not fit its dims %s"
                                  % (self.source, name, list(shape)))
            flat[tensor.segment.begin:tensor.segment.end] = values
            covered += values.size
        if covered != count:
            raise Caffe2Error("%s: blob %r has chunks for %d of its %d values (the database is "
                              "incomplete)" % (self.source, name, covered, count))
        return flat.reshape(shape), whole.device_detail
