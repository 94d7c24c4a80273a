"""Food-101 data: the folder layout, the LMDB builder, the batch reader, augmentation.

    Food101Layout(root).items("train")         meta/*.txt -> validated (image_id, path, label)
    build_lmdb(root, "train", out)             -> LMDB of Caffe2 TensorProtos [image, label]
    LMDBReader(out, batch_size, shuffle=True)  -> uint8 NCHW batches + int32 labels
    Augment(227, train=True, device="cuda")    -> random crop / mirror / mean, as float
    check_lmdb(out)                            -> report of problems in a database
    make_demo_dataset(root)                    -> a small synthetic Food-101 for demos and tests

Names load on first use, so the decode workers of a build import neither torch nor the reader.
"""
import importlib

_EXPORTS = {
    "Food101Layout": "layout", "LayoutError": "layout", "LAYOUT_VERSION": "layout", "Item": "layout",
    "build_lmdb": "writer", "BuildSummary": "writer", "BuildError": "writer",
    "OutputExistsError": "writer", "read_metadata": "writer", "META_FILE": "writer",
    "LMDBReader": "reader",
    "RecordError": "records", "encode_record": "records", "RecordDecoder": "records",
    "BadImage": "decode", "read_image": "decode", "resize_image": "decode", "decode_image_bytes": "decode",
    "Augment": "augment", "random_crop_mirror": "augment", "center_crop": "augment",
    "crop_normalize": "augment", "BGR_MEAN": "augment",
    "check_lmdb": "check", "CheckReport": "check",
    "make_demo_dataset": "synthetic", "DEMO_CLASSES": "synthetic",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    value = getattr(importlib.import_module("." + module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
