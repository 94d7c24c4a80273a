"""ImageInput: batches of images from a DB, resized, cropped, mirrored and normalised.

    reader = init_net.CreateDB([], "reader", db="food101_train_lmdb", db_type="lmdb")
    data_nhwc, label = net.ImageInput([reader], ["data_nhwc", "label"], batch_size=32,
                                      scale=256, crop=227, mirror=1, is_test=0,
                                      mean_per_channel=[104., 117., 123.], std=1.)
    (brew.image_input(model, [reader], ["data", "label"], ...) adds NHWC2NCHW, as Caffe2)

Records, as Caffe2's ImageInput reads them:
- TensorProtos [image, label]: image STRING (an encoded JPEG/PNG, decoded with OpenCV, BGR) or
  BYTE raw pixels with dims (H, W, C) (Caffe2's layout) or (C, H, W) (this project's Food-101
  LMDBs, `food101.data.records`: told apart by which end holds 1 or 3 channels); label INT32/64.
- `use_caffe_datum=1`: Caffe `Datum` records (raw CHW bytes or `encoded`, `label`).

Per image, as Caffe2's TransformImage (CPU path): resize the shorter side to `scale` (`warp=1`:
to scale x scale; `random_scale=[lo, hi]` draws the side per image), crop `crop` x `crop` (random
offsets when training, the centre when `is_test`), mirror with p = 0.5 when `mirror` and
training, then (x - mean) / std per channel (`mean`/`std` scalars or `mean_per_channel`/
`std_per_channel`). Decoding, resizing and the crop run on the host with OpenCV/numpy on uint8;
mirroring and normalisation run on the op's device on the uint8 batch (the float batch is made
where it is used). Output: float32 (or `output_type="float16"`) NHWC, or NCHW with
`use_gpu_transform=1` (Caffe2's GPU path); labels int32 (batch_size,).

Not supported (an error says so): colour jitter / lighting, multi-label `label_type`s, bounding
boxes. Random crops and mirrors draw from the workspace's RNG, so they are reproducible here but
not the same draws as Caffe2's.
"""
import weakref

import cv2
import numpy as np
import torch

from food101.caffe2 import db as dbs
from food101.caffe2.errors import enforce
from food101.caffe2.ops.registry import operator
from food101.caffe2.proto import caffe2_pb2, caffe_datum

_STRING = caffe2_pb2.TensorProto.STRING
_BYTE = caffe2_pb2.TensorProto.BYTE
_LABEL_TYPES = (caffe2_pb2.TensorProto.INT32, caffe2_pb2.TensorProto.INT64)
_raw_readers = weakref.WeakKeyDictionary()   # CreateDB's LMDB batch reader -> a record cursor


def _record_reader(reader):
    if isinstance(reader, dbs.DBReader):
        return reader
    path = getattr(reader, "path", None)
    enforce(path is not None, "ImageInput: input 0 must be a DB reader made by CreateDB, got %s",
            type(reader).__name__)
    if reader not in _raw_readers:
        _raw_readers[reader] = dbs.DBReader(path, "lmdb", num_shards=getattr(reader, "world_size", 1),
                                            shard_id=getattr(reader, "rank", 0),
                                            cursor=dbs.LMDBCursor(reader.env))
    return _raw_readers[reader]


def _decode(encoded, color, key, source):
    flag = cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE
    image = cv2.imdecode(np.frombuffer(encoded, dtype=np.uint8), flag)
    enforce(image is not None, "ImageInput: record %r of %r holds bytes OpenCV cannot decode",
            key, source)
    return image


def _as_color(image, color):
    """HWC uint8 with 3 channels (color) or 1 (grayscale), as Caffe2 converts."""
    if image.ndim == 2:
        image = image[:, :, None]
    if color and image.shape[2] == 1:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif not color and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return image.reshape(image.shape[0], image.shape[1], -1)


def _tensor_protos_record(key, value, color, source):
    protos = caffe2_pb2.TensorProtos()
    try:
        protos.ParseFromString(value)
    except Exception as e:  # noqa: BLE001 - protobuf raises several types
        enforce(False, "ImageInput: record %r of %r is not a TensorProtos (%s)", key, source, e)
    enforce(len(protos.protos) >= 2, "ImageInput: record %r of %r holds %d tensors; expected "
            "[image, label]", key, source, len(protos.protos))
    image_proto, label_proto = protos.protos[0], protos.protos[1]
    if image_proto.data_type == _STRING:
        enforce(len(image_proto.string_data) == 1, "ImageInput: record %r: an encoded image is one "
                "string, got %d", key, len(image_proto.string_data))
        image = _decode(image_proto.string_data[0], color, key, source)
    else:
        enforce(image_proto.data_type == _BYTE, "ImageInput: record %r of %r: image data_type %s; "
                "ImageInput reads STRING (encoded) or BYTE (raw pixels)", key, source,
                caffe2_pb2.TensorProto.DataType.Name(image_proto.data_type))
        dims = list(image_proto.dims)
        raw = np.frombuffer(image_proto.byte_data, dtype=np.uint8)
        if len(dims) == 2:
            image = raw.reshape(dims[0], dims[1], 1)
        elif len(dims) == 3 and dims[2] in (1, 3):
            image = raw.reshape(dims)                                 # Caffe2: H, W, C
        elif len(dims) == 3 and dims[0] in (1, 3):
            image = raw.reshape(dims).transpose(1, 2, 0)              # this project: C, H, W
        else:
            enforce(False, "ImageInput: record %r of %r: raw image dims %s are neither (H, W, C) "
                    "nor (C, H, W) with 1 or 3 channels", key, source, dims)
    enforce(label_proto.data_type in _LABEL_TYPES and
            len(label_proto.int32_data) + len(label_proto.int64_data) >= 1,
            "ImageInput: record %r of %r: the label must be one INT32/INT64 value", key, source)
    label = (label_proto.int32_data or label_proto.int64_data)[0]
    return _as_color(image, color), int(label)


def _datum_record(key, value, color, source):
    try:
        datum = caffe_datum.parse_datum(value)
        image = caffe_datum.datum_image(datum, decode=lambda data: _decode(data, color, key, source))
    except caffe_datum.DatumError as e:
        enforce(False, "ImageInput: record %r of %r is not a Caffe Datum (use_caffe_datum=1): %s",
                key, source, e)
    return _as_color(image.transpose(1, 2, 0), color), int(datum["label"])


def _resized(image, side, warp):
    h, w = image.shape[:2]
    if warp:
        size = (side, side)
    elif h > w:
        size = (side, int(float(h) * side / w))
    else:
        size = (int(float(w) * side / h), side)
    if (size[1], size[0]) == (h, w):
        return image
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return resized.reshape(size[1], size[0], -1)


def _unsupported(**given):
    for name, value in given.items():
        enforce(not value, "ImageInput: %s is not supported by this runtime (given %r); "
                "remove it or augment with food101.data.augment", name, value)


@operator("ImageInput", grad_inputs=(), context=True)
def image_input(reader=None, *, batch_size=0, color=1, scale=-1, warp=0, minsize=-1,
                random_scale=(-1, -1), crop=-1, mirror=0, is_test=0, mean=0.0, std=1.0,
                mean_per_channel=(), std_per_channel=(), use_caffe_datum=0, use_gpu_transform=0,
                output_type="float", label_type=0, num_labels=0, color_jitter=0, color_lighting=0,
                scale_jitter_type=0, bounding_ymin=-1, db="", db_type="", ctx):
    _unsupported(color_jitter=color_jitter, color_lighting=color_lighting, label_type=label_type,
                 scale_jitter_type=scale_jitter_type, bounding_box=bounding_ymin >= 0)
    if reader is None:
        enforce(bool(db) and bool(db_type), "ImageInput needs a DB reader input or db and db_type")
        reader = ctx.workspace.blobs.setdefault("__image_input_reader_%s" % db,
                                                dbs.DBReader(db, db_type))
    records = _record_reader(reader)
    enforce(batch_size > 0, "ImageInput: batch_size must be > 0, got %d", batch_size)
    randomised = len(random_scale) == 2 and random_scale[0] > 0
    enforce(scale > 0 or randomised, "ImageInput: scale must be > 0 (the shorter side is resized "
            "to it) or random_scale=[lo, hi] given; got scale=%s", scale)
    enforce(crop > 0, "ImageInput: crop must be > 0, got %d", crop)
    enforce(output_type in ("float", "float16"), "ImageInput: output_type %r is not float or "
            "float16", output_type)
    gen_cpu = ctx.workspace.generator(torch.device("cpu"))
    crops, labels = [], []
    for _ in range(batch_size):
        key, value = records.read()
        parse = _datum_record if use_caffe_datum else _tensor_protos_record
        image, label = parse(key, value, color, records.source)
        side = scale
        if randomised:
            side = int(torch.randint(int(random_scale[0]), int(random_scale[1]) + 1, (1,),
                                     generator=gen_cpu))
        if minsize > 0 and min(image.shape[:2]) < minsize:
            side = max(side, minsize)
        image = _resized(image, side, warp)
        h, w = image.shape[:2]
        enforce(crop <= h and crop <= w, "ImageInput: record %r: crop %d is larger than the "
                "%dx%d image after scaling", key, crop, h, w)
        if is_test:
            top, left = (h - crop) // 2, (w - crop) // 2
        else:
            top = int(torch.randint(0, h - crop + 1, (1,), generator=gen_cpu))
            left = int(torch.randint(0, w - crop + 1, (1,), generator=gen_cpu))
        crops.append(image[top:top + crop, left:left + crop])
        labels.append(label)
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(crops))).to(ctx.device)   # N,H,W,C uint8
    if mirror and not is_test:
        flip = torch.rand(batch_size, generator=gen_cpu) < 0.5
        flip = flip.to(ctx.device).view(-1, 1, 1, 1)
        batch = torch.where(flip, batch.flip(2), batch)
    channels = batch.shape[3]
    mean_c = _per_channel(mean_per_channel, mean, channels, "mean", ctx.device)
    std_c = _per_channel(std_per_channel, std, channels, "std", ctx.device)
    out = (batch.float() - mean_c) / std_c
    if use_gpu_transform:
        out = out.permute(0, 3, 1, 2).contiguous()
    if output_type == "float16":
        out = out.half()
    label = torch.tensor(labels, dtype=torch.int32, device=ctx.device)
    return out, label


def _per_channel(values, scalar, channels, name, device):
    values = list(values) if len(values) else [float(scalar)] * channels
    enforce(len(values) == channels, "ImageInput: %s_per_channel has %d values for %d channels",
            name, len(values), channels)
    return torch.tensor(values, dtype=torch.float32, device=device)
