"""Export in one call (tools/export.py), and the export names of the notebook API.

`export_model` turns a Model Zoo folder, or a training checkpoint's weights on it, into a Caffe2
deploy folder and/or an ONNX file. The work is done by the owners: interop/deploy.py (the deploy
folder and its metadata) and interop/onnx_export.py (the ONNX converters); `food101.export`
(`from food101 import export; export.to_onnx(...)`) is this module.
"""
import os

from food101 import zoo as zoo_module
from food101.checkpoint import load_checkpoint
from food101.interop.deploy import (PREPROCESS, ExportError, ModelMetadata, deploy_model,  # noqa: F401
                                    read_metadata, to_caffe2, write_deploy)
from food101.interop.onnx_export import to_onnx, verify_onnx  # noqa: F401


def export_model(out_dir, formats=("caffe2", "onnx"), model_dir=None, checkpoint=None,
                 num_classes=None, class_names=None, opset=None, verify=False):
    """Export a zoo-format model, or a training checkpoint's weights on it, to `out_dir`.

    model_dir: a Model Zoo folder (default: food101.zoo.locate_squeezenet()). checkpoint: a
    food101 training checkpoint (file or folder); its blobs are the weights, and the model is
    re-headed to `num_classes` (class_names: list or labels file; default: the checkpoint's
    classes, else Food-101's) to match, and its crop/mean/resize become preprocess.json. A deploy
    folder's preprocess.json travels with its weights unchanged.
    Without a checkpoint the folder is exported as it is. Writes out_dir/ (Caffe2 deploy folder)
    and/or out_dir/model.onnx; verify runs the ONNX reference evaluator against our executor.
    Returns {"caffe2": folder, "onnx": path, "onnx_max_diff": float, "note": str}.
    """
    result = {}
    metadata = None
    if model_dir is None:
        location = zoo_module.locate_squeezenet()
        model, result["note"] = location.load(), location.note
    else:
        model = zoo_module.load(model_dir)
        result["note"] = str(model_dir)
        if os.path.exists(os.path.join(model_dir, PREPROCESS)):   # a deploy folder
            metadata = read_metadata(model_dir, model.predict_net)
    if checkpoint is not None:
        payload = load_checkpoint(checkpoint)
        weights = {k: v for k, v in payload["blobs"].items() if hasattr(v, "shape")}
        trainer = payload.get("trainer") or {}
        if class_names is None and trainer.get("class_names"):
            class_names = list(trainer["class_names"])
        if num_classes is None:
            num_classes = len(class_names) if class_names is not None and not isinstance(
                class_names, str) else 101
        io = trainer.get("io") or {}
        if io.get("crop_size") is not None:  # the preprocessing the weights were trained with
            # (crop 0: no crop, the whole image)
            image = io.get("mean_image")   # a Caffe mean_file's image: it travels along
            metadata = ModelMetadata(crop=int(io["crop_size"]),
                                     mean_bgr=tuple(io.get("mean") or ModelMetadata().mean_bgr)
                                     if image is None else None,
                                     mean_image=image.numpy() if image is not None else None,
                                     resize_size=io.get("resize_size"),
                                     resize=io.get("resize") or "crop")
        if model.num_classes != num_classes:
            model = zoo_module.replace_classifier(model, num_classes, class_names=class_names)
        result["note"] += "; weights from %s (iteration %d)" % (payload["path"], payload["iteration"])
    else:
        weights = model.weights()
        if class_names is not None:
            model = model.copy(class_names=class_names if not isinstance(class_names, str)
                               else zoo_module.read_labels(class_names))
    unknown = set(formats) - {"caffe2", "onnx"}
    if unknown:
        raise ExportError("export: unknown format(s) %s; choose caffe2 and/or onnx" % sorted(unknown))
    os.makedirs(out_dir, exist_ok=True)
    if "caffe2" in formats:
        write_deploy(model, out_dir, weights=weights, metadata=metadata)
        result["caffe2"] = out_dir
    if "onnx" in formats:
        path = os.path.join(out_dir, "model.onnx")
        shape = None
        if metadata is not None and metadata.crop:   # the size the model was trained at
            shape = tuple(model.input_shape[:2]) + (int(metadata.crop),) * 2
        proto = to_onnx(model, path, weights=weights, opset=opset, input_shape=shape)
        result["onnx"] = path
        result["onnx_opset"] = proto.opset_import[0].version
        if verify:
            result["onnx_max_diff"] = verify_onnx(proto, model, weights=weights)
    return result


__all__ = ["ExportError", "deploy_model", "export_model", "to_caffe2", "to_onnx", "verify_onnx",
           "write_deploy"]
