"""Caffe's `Datum`, the record of Caffe's Data-layer LMDBs (convert_imageset), read off the wire.

    channels=1  height=2  width=3  (varint)    data=4 (bytes: raw uint8 C x H x W, or an encoded
    image when encoded=7 is true)   label=5 (varint)   float_data=6 (repeated float)

Caffe2's ImageInput reads these (use_caffe_datum=1) and so does the trainer's LMDB reader, for a
Caffe user's existing LMDBs. Field numbers are BVLC caffe.proto's.
"""
import numpy as np

_FIELDS = {1: "channels", 2: "height", 3: "width", 4: "data", 5: "label", 7: "encoded"}


class DatumError(ValueError):
    """The bytes are not a Caffe Datum this reader handles; the message says why."""


def read_varint(buf, pos):
    """A protobuf base-128 varint at `pos` -> (value, next position); IndexError past the end."""
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DatumError("a varint runs over 10 bytes")


def looks_like_datum(buf):
    """A Datum written by Caffe starts with its channels field (tag 0x08); a Caffe2 TensorProtos
    starts with a length-delimited protos entry (0x0A)."""
    return len(buf) > 0 and buf[0] == 0x08


def parse_datum(buf):
    """-> dict(channels, height, width, data (bytes), label, encoded, float_count)."""
    fields = {"channels": 0, "height": 0, "width": 0, "data": b"", "label": 0, "encoded": 0,
              "float_count": 0}
    pos, end = 0, len(buf)
    try:
        while pos < end:
            tag, pos = read_varint(buf, pos)
            field, wire = tag >> 3, tag & 7
            if wire == 0:
                number, pos = read_varint(buf, pos)
                if field in _FIELDS:
                    fields[_FIELDS[field]] = number - (1 << 64) if number >= 1 << 63 else number
            elif wire == 2:
                size, pos = read_varint(buf, pos)
                if pos + size > end:
                    raise DatumError("field %d claims %d bytes, %d are left" % (field, size, end - pos))
                if field == 4:
                    fields["data"] = bytes(buf[pos:pos + size])
                elif field == 6:
                    fields["float_count"] += size // 4
                pos += size
            elif wire == 5:
                fields["float_count"] += field == 6
                pos += 4
            elif wire == 1:
                pos += 8
            else:
                raise DatumError("wire type %d of field %d is not protobuf's" % (wire, field))
        if pos != end:
            raise DatumError("the last field runs past the end of the record")
    except IndexError:
        raise DatumError("the record ends inside a field") from None
    return fields


def datum_image(fields, decode=None):
    """The image of a parsed Datum as uint8 (C, H, W). Encoded data goes through `decode`
    (bytes -> HWC or HW uint8, e.g. OpenCV); float_data images are refused (Caffe's image LMDBs
    hold bytes)."""
    if fields["encoded"]:
        if decode is None:
            raise DatumError("the Datum holds an encoded image and no decoder was given")
        image = decode(fields["data"])
        if image is None:
            raise DatumError("its encoded image (%d bytes) cannot be decoded" % len(fields["data"]))
        image = image[:, :, None] if image.ndim == 2 else image
        return np.ascontiguousarray(image.transpose(2, 0, 1))
    c, h, w = fields["channels"], fields["height"], fields["width"]
    if not fields["data"] and fields["float_count"]:
        raise DatumError("it holds float_data (%d floats), not image bytes" % fields["float_count"])
    if c * h * w != len(fields["data"]) or c <= 0:
        raise DatumError("channels x height x width = %d x %d x %d does not match its %d data bytes"
                         % (c, h, w, len(fields["data"])))
    return np.frombuffer(fields["data"], dtype=np.uint8).reshape(c, h, w)
