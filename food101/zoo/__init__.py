"""The Caffe2 Model Zoo: load, download + verify, classifier surgery, freezing, ONNX import.

    model = zoo.load("models/squeezenet")               # or zoo.locate_squeezenet().load()
    print(model)                                         # layer table: blob, op, shape, params
    food = zoo.replace_classifier(model, num_classes=101)
    train = zoo.build_finetune_model(food)               # ModelHelper; train.params: conv10_w, conv10_b
    test = zoo.build_finetune_model(food, is_test=True, param_model=train)
    before = zoo.frozen_checksums(train)  ...train...  zoo.audit_frozen(before, train).check()

Modules: model (ZooModel, load), download (resumable verified downloads), locate (real files or
the stand-in), surgery (replace_classifier), finetune (the fine-tune net builder and the
frozen-blob audit). ONNX import lives in food101.interop.onnx_import.
"""
from food101.zoo.download import (DownloadError, DownloadVerificationError, download_model, load_checksums,  # noqa: F401
                       sha256_of, verify_file)
from food101.zoo.finetune import (FinetuneInfo, FrozenAudit, audit_frozen, build_finetune_model,  # noqa: F401
                       build_finetune_sgd, frozen_checksums)
from food101.zoo.locate import ZooLocation, locate_squeezenet  # noqa: F401
from food101.zoo.model import (MissingParameterError, ZooError, ZooFileMissingError, ZooModel,  # noqa: F401
                    find_classifier, load, read_labels)
from food101.zoo.surgery import WEIGHT_INITS, food101_classes, replace_classifier  # noqa: F401


def __getattr__(name):
    # `zoo.from_onnx` was this package's name for ONNX import; its owner is now food101.interop
    if name == "from_onnx":
        from food101.interop.onnx_import import from_onnx
        return from_onnx
    raise AttributeError("module 'food101.zoo' has no attribute %r" % name)
