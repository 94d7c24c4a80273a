"""food101: Caffe2 re-built on PyTorch, and the tools to fine-tune the Caffe2 Model Zoo
SqueezeNet on ETH Food-101.

The notebook API, one module per step:

    import food101
    model = food101.zoo.locate_squeezenet().load()             # Model Zoo folder (or the stand-in)
    food101.data.build_lmdb("food-101", "train", "train_lmdb")  # decode once, CHW uint8 TensorProtos
    result = food101.train.fine_tune("configs/food101_squeezenet.yaml")
    food101.inference.evaluate_model(result["deploy_dir"], "test_lmdb")
    food101.interop.export.to_onnx(food101.zoo.load(result["deploy_dir"]), "food101.onnx", ...)
    food101.walkthrough.run_demo("demo_run")                    # the whole journey on demo data

Caffe2 code imports the runtime directly: `from food101.caffe2 import core, workspace, ...`.
Submodules load on first use, so `import food101` stays cheap (the LMDB build workers import
the package without needing torch).
"""
import importlib

__version__ = "0.1.0"
_SUBMODULES = ("caffe2", "data", "diagnostics", "inference", "interop", "train", "walkthrough", "zoo")
# names kept from the first layout: `food101.export` is food101.interop.export, `food101.demo`
# food101.walkthrough
_MOVED = {"export": "food101.interop.export", "demo": "food101.walkthrough"}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module("." + name, __name__)
    if name in _MOVED:
        return importlib.import_module(_MOVED[name])
    raise AttributeError("module 'food101' has no attribute %r" % name)


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
