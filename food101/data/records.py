"""One LMDB value: a Caffe2 `TensorProtos` of [image, label], as Caffe2's LMDB examples write it.

    TensorProtos.protos[0]  image  dims (C, H, W), BYTE in byte_data (or FLOAT in float_data)
    TensorProtos.protos[1]  label  dims () or (1,), INT32 in int32_data (INT64 accepted)

Writing goes through the Caffe2 schema (`caffe2_pb2`). Reading has a fast path: a small
protobuf wire-format scanner that finds where the image bytes lie inside the value, so the
reader copies them once, straight from LMDB's memory map into the batch array (the generic
protobuf parse would copy each image twice more). Anything the scanner does not expect (raw_data,
split packed runs, other data types) falls back to the schema parse, so both paths accept
every record the schema does; tests check that they agree.
"""
import numpy as np

from food101.caffe2.proto import caffe2_pb2, caffe_datum, tensor_to_numpy
from food101.caffe2.proto.caffe_datum import DatumError
from food101.caffe2.proto.caffe_datum import read_varint as _varint

BYTE = caffe2_pb2.TensorProto.BYTE
FLOAT = caffe2_pb2.TensorProto.FLOAT
INT32 = caffe2_pb2.TensorProto.INT32
INT64 = caffe2_pb2.TensorProto.INT64
IMAGE_DTYPES = {BYTE: np.dtype(np.uint8), FLOAT: np.dtype(np.float32)}
_LABEL_TYPES = (INT32, INT64)


class RecordError(ValueError):
    """A malformed record; the message names the LMDB path and the key."""


def encode_record(image_chw, label):
    """CHW uint8 (BYTE) or float32 (FLOAT) image + int label -> serialized TensorProtos."""
    image_chw = np.ascontiguousarray(image_chw)
    protos = caffe2_pb2.TensorProtos()
    image = protos.protos.add()
    image.dims.extend(image_chw.shape)
    if image_chw.dtype == np.uint8:
        image.data_type = BYTE
        image.byte_data = image_chw.tobytes()
    elif image_chw.dtype == np.float32:
        image.data_type = FLOAT
        image.float_data.extend(image_chw.reshape(-1).tolist())
    else:
        raise TypeError("records hold uint8 or float32 images, got %s" % image_chw.dtype)
    lab = protos.protos.add()
    lab.data_type = INT32
    lab.int32_data.append(int(label))
    return protos.SerializeToString()


class _Fallback(Exception):
    """The scanner met something it does not handle; use the schema parse."""


def _signed64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def _scan_tensor(buf, pos, end):
    """One TensorProto -> (dims, data_type, payload) where payload is (offset, nbytes) of the
    byte_data/float_data run, or a list of ints (int32_data/int64_data)."""
    dims, data_type, payload = [], FLOAT, None
    while pos < end:
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            if field == 1:
                dims.append(_signed64(value))
            elif field == 2:
                data_type = value
            elif field in (4, 10):
                payload = (payload or []) + [_signed64(value)]
            continue
        if wire == 2:
            length, pos = _varint(buf, pos)
            stop = pos + length
            if stop > end:
                raise _Fallback()
            if field == 1:                      # packed dims
                while pos < stop:
                    value, pos = _varint(buf, pos)
                    dims.append(_signed64(value))
            elif field in (3, 5):               # float_data (packed) / byte_data
                if payload is not None:
                    raise _Fallback()
                payload = (pos, length)
            elif field in (4, 10):              # packed int32_data / int64_data
                values = payload if isinstance(payload, list) else []
                while pos < stop:
                    value, pos = _varint(buf, pos)
                    values.append(_signed64(value))
                payload = values
            elif field in (6, 9, 13):           # string/double/raw data: schema path
                raise _Fallback()
            pos = stop
            continue
        if wire == 5:
            if field == 3:
                raise _Fallback()
            pos += 4
        elif wire == 1:
            pos += 8
        else:
            raise _Fallback()
    if pos != end:
        raise _Fallback()
    return tuple(dims), data_type, payload


def scan_record(buf):
    """Wire-scan a TensorProtos value -> list of (dims, data_type, payload); raises _Fallback."""
    tensors, pos, end = [], 0, len(buf)
    while pos < end:
        tag, pos = _varint(buf, pos)
        if tag != 0x0A:     # protos = 1, length-delimited; TensorProtos has no other field
            raise _Fallback()
        length, pos = _varint(buf, pos)
        if pos + length > end:
            raise _Fallback()
        tensors.append(_scan_tensor(buf, pos, pos + length))
        pos += length
    return tensors


class RecordDecoder:
    """Decodes [image, label] records of one LMDB; knows the path for error messages.

    Records of one database share their header byte for byte (same dims, same type), so after
    one full scan the decoder remembers the header; a record that starts with it has its image
    at the same offset and only the few bytes after the image (the label tensor) are looked at,
    through a small cache."""

    _MAX_TAILS = 4096

    def __init__(self, path):
        self.path = path
        self._header = None      # (prefix bytes, dims, dtype, count, payload end)
        self._tails = {}         # label tensor bytes -> label

    def fail(self, key, message):
        raise RecordError("%s: record '%s': %s" % (self.path, key_text(key), message))

    def decode(self, key, buf):
        """-> (image ndarray (C,H,W) referencing `buf` where possible, label int)."""
        header = self._header
        if header is not None and len(buf) > header[4] and buf[:len(header[0])] == header[0]:
            prefix, dims, dtype, count, end = header
            tail = bytes(buf[end:])
            label = self._tails.get(tail)
            if label is None:
                label = self._tail_label(key, tail)
            return np.frombuffer(buf, dtype=dtype, count=count, offset=len(prefix)).reshape(dims), label
        try:
            tensors = scan_record(buf)
            if len(tensors) < 2:
                raise _Fallback()
            (dims, data_type, payload), (_, label_type, label_values) = tensors[0], tensors[1]
            if data_type not in IMAGE_DTYPES or not isinstance(payload, tuple):
                raise _Fallback()
            if label_type not in _LABEL_TYPES or not isinstance(label_values, list):
                raise _Fallback()
            dtype = IMAGE_DTYPES[data_type].newbyteorder("<")
            offset, nbytes = payload
            count = nbytes // dtype.itemsize
            if nbytes != int(np.prod(dims, dtype=np.int64)) * dtype.itemsize or len(dims) != 3:
                raise _Fallback()
            if len(label_values) != 1:
                self.fail(key, "label tensor holds %d values, expected 1" % len(label_values))
            image = np.frombuffer(buf, dtype=dtype, count=count, offset=offset).reshape(dims)
            if len(tensors) == 2:
                self._remember_header(buf, dims, dtype, count, offset + nbytes)
            return image, label_values[0]
        except (_Fallback, DatumError, IndexError):
            return self._decode_with_schema(key, buf)

    def _remember_header(self, buf, dims, dtype, count, end):
        """Cache the bytes before the image payload if the image tensor comes first and the
        label tensor is all that follows it."""
        start = end - count * dtype.itemsize
        try:
            tail = scan_record(bytes(buf[end:]))
        except (_Fallback, DatumError, IndexError):
            return
        if len(tail) == 1:
            self._header = (bytes(buf[:start]), dims, dtype, count, end)

    def _tail_label(self, key, tail):
        try:
            tensors = scan_record(tail)
        except (_Fallback, DatumError, IndexError):
            tensors = None
        if not tensors or len(tensors) != 1 or tensors[0][1] not in _LABEL_TYPES \
                or not isinstance(tensors[0][2], list) or len(tensors[0][2]) != 1:
            self.fail(key, "the label tensor after the image is malformed (%d bytes: %r)" % (len(tail), tail[:32]))
        label = tensors[0][2][0]
        if len(self._tails) < self._MAX_TAILS:
            self._tails[tail] = label
        return label

    def _decode_with_schema(self, key, buf):
        if caffe_datum.looks_like_datum(buf):
            return self._decode_datum(key, buf)
        try:
            protos = caffe2_pb2.TensorProtos.FromString(bytes(buf))
        except Exception as e:  # the protobuf runtime's DecodeError and friends
            self.fail(key, "neither a Caffe2 TensorProtos (%s: %s) nor a Caffe Datum"
                      % (type(e).__name__, e))
        if len(protos.protos) < 2:
            self.fail(key, "holds %d tensor(s), expected 2 (image, label)" % len(protos.protos))
        try:
            image = tensor_to_numpy(protos.protos[0])
            label = tensor_to_numpy(protos.protos[1])
        except Exception as e:
            self.fail(key, str(e))
        if image.ndim != 3:
            self.fail(key, "image has dims %s, expected (C, H, W)" % (list(image.shape),))
        if image.dtype not in (np.uint8, np.float32):
            self.fail(key, "image data_type %s, expected BYTE or FLOAT"
                      % caffe2_pb2.TensorProto.DataType.Name(protos.protos[0].data_type))
        if label.dtype.kind not in "iu" or label.size != 1:
            self.fail(key, "label is %s of shape %s, expected one INT32/INT64 value"
                      % (label.dtype, list(label.shape)))
        return image, int(label.reshape(-1)[0])


    def _decode_datum(self, key, buf):
        """A Caffe Data-layer record (convert_imageset): raw or encoded uint8 image, label."""
        try:
            datum = caffe_datum.parse_datum(bytes(buf))
            image = caffe_datum.datum_image(datum, decode=_decode_bgr)
        except DatumError as e:
            self.fail(key, "not a Caffe2 TensorProtos, and not a readable Caffe Datum: %s" % e)
        if image.shape[0] not in (1, 3):
            self.fail(key, "Caffe Datum with %d channels, expected 1 or 3" % image.shape[0])
        return image, int(datum["label"])


def _decode_bgr(data):
    import cv2  # only encoded Caffe Datums need OpenCV here
    return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)


def key_text(key):
    """An LMDB key (bytes) as text for reports, logs and JSON: UTF-8 when it is, with every other
    byte and every control character escaped (\\xNN), so the text names exactly one key.
    Text keys are returned as they are; None stays None."""
    if key is None or isinstance(key, str):
        return key
    if isinstance(key, (bytes, bytearray, memoryview)):
        text = bytes(key).decode("utf-8", "backslashreplace")
        if any(not c.isprintable() for c in text):
            text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                           for c in text)
        return text
    return str(key)


def key_source(key):
    """The source image id stored in a builder key ("00000012_pizza/123" -> "pizza/123")."""
    text = key_text(key)
    if isinstance(text, str) and "_" in text:
        position, _, source = text.partition("_")
        if position.isdigit():
            return source
    return None
