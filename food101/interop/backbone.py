"""Any backbone the project can fine-tune, as a ZooModel: a Model Zoo folder, an ONNX model, or a
Caffe deploy.prototxt + .caffemodel.

    load_backbone("models/squeezenet")            # init_net.pb + predict_net.pb + value_info.json
    load_backbone("efficientnet_lite0.onnx")      # or a folder holding one .onnx file
    load_backbone("caffe/squeezenet_v1.1")        # a folder with deploy.prototxt + one .caffemodel
    from_caffe("deploy.prototxt", "w.caffemodel")

The zoo format's output is class probabilities (SqueezeNet's `softmaxout`); an imported net that
ends in logits (torch exports, Caffe deploy nets without a Softmax layer) gets a Softmax op
appended, so the fine-tune builder's cross-entropy, the evaluators and predict read
probabilities from every backbone. Classifier surgery then finds the classifier itself
(zoo.find_classifier: the last FC, or the last 1x1 Conv before the global pool).
"""
import glob
import os
import re

import numpy as np

from food101.caffe2.utils import ArgsToDict, given_fill, given_fill_value, make_op
from food101.interop.caffe import netfile, translator
from food101.interop.onnx_import import from_onnx
from food101.zoo import _nets
from food101.zoo.model import ZooError, ZooModel, load as load_zoo_folder


def load_backbone(path, input_shape=None, class_names=None):
    """A ZooModel from a zoo folder, an .onnx file (or a folder with one), or a Caffe folder /
    deploy prototxt (with one .caffemodel beside it). The error lists what was looked for."""
    path = os.fspath(path)
    if os.path.isfile(path) and path.endswith(".onnx"):
        return with_softmax(from_onnx(path, input_shape=input_shape), class_names)
    if os.path.isfile(path) and path.endswith(".prototxt"):
        models = glob.glob(os.path.join(os.path.dirname(os.path.abspath(path)), "*.caffemodel"))
        if len(models) != 1:
            raise ZooError("%s: expected one .caffemodel beside it, found %d" % (path, len(models)))
        return from_caffe(path, models[0], input_shape, class_names)
    if not os.path.isdir(path):
        raise ZooError("model %r: not a folder, .onnx or .prototxt file" % path)
    names = os.listdir(path)
    if "predict_net.pb" in names or "predict_net.pbtxt" in names or "init_net.pb" in names:
        return load_zoo_folder(path, input_shape=input_shape, class_names=class_names)
    onnx_files = sorted(n for n in names if n.endswith(".onnx"))
    caffemodels = sorted(n for n in names if n.endswith(".caffemodel"))
    if len(onnx_files) == 1:
        return with_softmax(from_onnx(os.path.join(path, onnx_files[0]), input_shape=input_shape),
                            class_names)
    if len(caffemodels) == 1:
        prototxt = os.path.join(path, "deploy.prototxt")
        if not os.path.exists(prototxt):
            raise ZooError("%s holds %s but no deploy.prototxt" % (path, caffemodels[0]))
        return from_caffe(prototxt, os.path.join(path, caffemodels[0]), input_shape, class_names)
    raise ZooError("%s is not a model folder: expected init_net.pb + predict_net.pb (Model Zoo), "
                   "one .onnx file, or deploy.prototxt + one .caffemodel (it holds: %s)"
                   % (path, ", ".join(sorted(names)) or "nothing"))


def backbone_name(path):
    """A short name for the model at `path` (what load_backbone takes, or a Caffe
    train_val.prototxt), for file names such as snapshot prefixes: an .onnx file's stem, a Caffe
    net's `name:`, a Model Zoo predict net's name; the file or folder name when there is none.
    Lower case, [a-z0-9_] only. Reads at most one small net file, never weights."""
    path = os.path.abspath(os.fspath(path))
    name = ""
    folder = path if os.path.isdir(path) else None
    names = sorted(os.listdir(folder)) if folder else []
    onnx_files = [n for n in names if n.endswith(".onnx")]
    try:
        if path.endswith(".onnx") or len(onnx_files) == 1:
            name = os.path.splitext(os.path.basename(path if not folder else onnx_files[0]))[0]
        elif path.endswith(".prototxt") or "deploy.prototxt" in names:
            name = netfile.read_net(path if not folder else os.path.join(path, "deploy.prototxt"),
                                    dropped=[]).name  # loading the model reports its fields
        elif folder and ("predict_net.pb" in names or "predict_net.pbtxt" in names):
            from food101.caffe2.proto import load_net
            name = load_net(os.path.join(path, "predict_net.pb" if "predict_net.pb" in names
                                         else "predict_net.pbtxt")).name
    except Exception:  # noqa: BLE001 - a name is a nicety; loading the model reports problems
        name = ""
    name = name or os.path.splitext(os.path.basename(path.rstrip(os.sep)))[0]
    return re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "model"


def from_caffe(prototxt, caffemodel, input_shape=None, class_names=None):
    """A Caffe deploy net with its weights -> ZooModel (inference-mode ops, Softmax output)."""
    net = netfile.read_net(prototxt)
    weights = netfile.read_caffemodel(caffemodel)
    t = translator.translate(net, weights, phase="TEST", input_dims=input_shape)
    if len(t.inputs) != 1:
        raise ZooError("%s: a backbone takes one input, the net has %s" % (prototxt, list(t.inputs)))
    (input_name, shape), = t.inputs.items()
    if shape is None:
        raise ZooError("%s: the input shape is unknown; give input_shape" % prototxt)
    predict = t.predict_net()
    for op, layer in zip(predict.op, t.layer_of_op):
        op.name = layer  # an op's error names the Caffe layer (e.g. a crop too small for a pool)
    predict.name = net.name or os.path.splitext(os.path.basename(prototxt))[0]
    model = ZooModel(t.init_net(), predict, input_name, [1] + list(shape[1:]))
    return with_softmax(model, class_names)


def with_softmax(model, class_names=None):
    """`model` whose output is probabilities: a Softmax op appended when it ends in logits."""
    producer = next((op for op in reversed(model.predict_net.op) if model.output_name in op.output),
                    None)
    if producer is not None and producer.type == "Softmax":
        return model.copy(class_names=class_names) if class_names is not None else model
    predict = _nets.clone(model.predict_net)
    prob = model.output_name + "_prob"
    predict.op.append(make_op("Softmax", [model.output_name], [prob]))
    del predict.external_output[:]
    predict.external_output.append(prob)
    changes = {"predict_net": predict, "output_name": prob}
    if class_names is not None:
        changes["class_names"] = class_names
    return model.copy(**changes)


def fold_input_normalization(model, mean_rgb, std_rgb, scale=255.0):
    """A torchvision-style backbone (RGB in [0, 1], normalised by mean/std) made to read the
    project's input: BGR pixels (0..255) minus a per-channel mean. The first conv's weights take
    the channel order and 1/(scale*std) (exact: its zero padding is the mean in both forms).
    Returns (model, mean_bgr) with mean_bgr for data.mean."""
    source, first = model.input_name, None
    for op in model.predict_net.op:  # zero padding (TF "same") before the conv is fine
        if op.type == "PadImage" and op.input[0] == source and \
                ArgsToDict(op.arg).get("mode", "constant") == "constant" and \
                not ArgsToDict(op.arg).get("value", 0.0):
            source = op.output[0]
        elif op.type == "Conv" and op.input[0] == source:
            first = op
            break
    if first is None:
        raise ZooError("fold_input_normalization: %r must feed a Conv first (through zero "
                       "padding at most)" % model.input_name)
    weight = first.input[1]
    init = _nets.clone(model.init_net)
    for i, op in enumerate(init.op):
        if weight in op.output:
            w = given_fill_value(op)
            std = np.asarray(std_rgb, np.float32)[::-1]
            w = w[:, ::-1] / (scale * std)[None, :, None, None]  # RGB -> BGR input channels
            init.op[i].CopyFrom(given_fill(weight, np.ascontiguousarray(w, np.float32)))
            break
    else:
        raise ZooError("fold_input_normalization: the init net does not fill %r with values" % weight)
    mean_bgr = tuple(float(m * scale) for m in list(mean_rgb)[::-1])
    return model.copy(init_net=init), mean_bgr
