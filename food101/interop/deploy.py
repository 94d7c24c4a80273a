"""The Caffe2 deploy folder: its one reader and writer, and the metadata that travels with it.

    <folder>/init_net.pb        GivenTensorFill ops holding every parameter
             predict_net.pb     the inference net (test-mode Dropout/SpatialBN, no engine hints)
             value_info.json    the input blob, shape and type (Model Zoo format)
             labels.txt         one class name a line
             preprocess.json    ModelMetadata: input/output blobs, BGR mean, crop, resize
             mean_image.npy     only for a model trained with a Caffe mean_file: the float32
                                C x H x W mean image (preprocess.json's mean_image; mean_bgr null)

`write_deploy(model, dest, metadata=...)` writes it (loadable by food101.zoo.load and by real
Caffe2: standard op types and arguments only); `read_metadata(folder)` reads preprocess.json
and labels.txt back into the same ModelMetadata that training and prediction use, with the
Model Zoo SqueezeNet's defaults (BGR mean (104, 117, 123), crop 227) for what a folder omits.
The deploy form of a model (`InferenceForm`) starts from the zoo predict net after classifier
surgery (input `data`: float NCHW, BGR, mean-subtracted; output `softmaxout`).
"""
import dataclasses
import io
import json
import os
from typing import Optional, Tuple

import numpy as np
import torch

from food101.caffe2 import workspace
from food101.caffe2.errors import Caffe2Error
from food101.caffe2.proto import caffe2_pb2, save_net
from food101.caffe2.utils import external_reads, given_fill, set_arg
from food101.data.augment import BGR_MEAN
from food101.fileio import write_bytes, write_text
from food101.zoo import _nets
from food101.zoo.model import LABELS, ZooModel, load, read_labels, write_labels, write_value_info

PREPROCESS = "preprocess.json"
MEAN_IMAGE = "mean_image.npy"


class ExportError(Caffe2Error):
    pass


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
    """What a model needs besides its nets to be fed and read correctly."""
    input_name: str = "data"
    output_name: str = "softmaxout"
    mean_bgr: Optional[Tuple[float, ...]] = BGR_MEAN   # subtracted from BGR pixels; None: none
    # a C x H x W mean image (Caffe's mean_file) subtracted instead of mean_bgr, at each pixel's
    # position in the resized image (so predict's resized images must have its H x W)
    mean_image: Optional[np.ndarray] = dataclasses.field(default=None, compare=False, repr=False)
    crop: int = 227                                     # side of the centre crop the net sees
                                                        # (0: none, the whole resized image)
    class_names: Optional[Tuple[str, ...]] = None
    resize_size: Optional[int] = None    # build_lmdb's size (shorter side, then centre square)
    resize: str = "crop"                 # build_lmdb's resize mode

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def preprocess_json(self):
        """The preprocess.json dict (class names go to labels.txt)."""
        info = {"input": self.input_name, "layout": "NCHW", "color": "BGR", "dtype": "float32",
                "mean_bgr": [float(m) for m in self.mean_bgr] if self.mean_bgr is not None else None,
                "crop": int(self.crop), "output": self.output_name,
                "note": "feed float images with the mean already subtracted; output is N x C x 1 x 1"}
        if self.resize_size is not None:
            info.update(resize_size=int(self.resize_size), resize=self.resize)
        if self.mean_image is not None:
            info.update(mean_bgr=None, mean_image=MEAN_IMAGE,
                        note="feed float images minus the mean image mean_image.npy (C x H x W, "
                             "the resized image's size) at the centre crop's position; output "
                             "is N x C x 1 x 1")
        return info

    @property
    def mean(self):
        """What to subtract: the mean image when there is one, else the per-channel means."""
        return self.mean_image if self.mean_image is not None else self.mean_bgr


def read_metadata(folder, predict_net=None):
    """ModelMetadata of a deploy folder (preprocess.json, labels.txt); what they omit takes the
    defaults, the blob names the predict net's first input and last output."""
    info = {}
    path = os.path.join(folder, PREPROCESS)
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
        except ValueError as e:     # UnicodeDecodeError too: a damaged file
            raise ExportError("%s is not valid JSON (%s)" % (path, e)) from None
        if not isinstance(info, dict):
            raise ExportError("%s: expected a JSON object, got %s" % (path, type(info).__name__))
        for key, ok in _PREPROCESS_CHECKS.items():
            if key in info and not ok(info[key]):
                raise ExportError("%s: %r is %r, which is not a valid value" % (path, key, info[key]))
    labels = os.path.join(folder, LABELS)
    default = ModelMetadata()
    image = None
    if info.get("mean_image"):
        image_path = os.path.join(folder, info["mean_image"])
        try:
            image = np.load(image_path, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError) as e:
            raise ExportError("%s names the mean image %s, which cannot be read (%s)"
                              % (path, image_path, e)) from None
        if image.ndim != 3:
            raise ExportError("%s: the mean image must be C x H x W, got shape %s"
                              % (image_path, list(image.shape)))
    return ModelMetadata(mean_image=image,
        input_name=info.get("input") or (predict_net.external_input[0] if predict_net is not None
                                         else default.input_name),
        output_name=info.get("output") or (predict_net.external_output[-1] if predict_net is not None
                                           else default.output_name),
        mean_bgr=tuple(info.get("mean_bgr") or default.mean_bgr) if image is None else None,
        crop=int(info.get("crop", default.crop)),
        class_names=tuple(read_labels(labels)) if os.path.exists(labels) else None,
        resize_size=info.get("resize_size"), resize=info.get("resize", default.resize))


def _positive_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


_PREPROCESS_CHECKS = {
    "crop": lambda v: v == 0 or _positive_int(v),
    "resize_size": lambda v: v is None or _positive_int(v),
    "mean_bgr": lambda v: v is None or (isinstance(v, list) and len(v) in (1, 3) and all(
        isinstance(m, (int, float)) and not isinstance(m, bool) for m in v)),
    "resize": lambda v: isinstance(v, str),
    "mean_image": lambda v: v is None or (isinstance(v, str) and bool(v)),
    "input": lambda v: isinstance(v, str) and bool(v),
    "output": lambda v: isinstance(v, str) and bool(v),
}


# ---------------------------------------------------------------------- deploy model
class InferenceForm:
    """A model made ready to deploy: a clean inference predict net and the values it reads."""

    def __init__(self, model, weights):
        info = getattr(model, "finetune", None)
        zoo = info.deploy if info is not None else model
        if not isinstance(zoo, ZooModel):
            raise ExportError("export needs a ZooModel or a model from build_finetune_model, got %r"
                              % model)
        self.zoo = zoo
        self.predict_net = predict = _inference_net(zoo.predict_net)
        self.params = [b for b in external_reads(predict) if b != zoo.input_name]
        self.values = _gather(self.params, weights)
        del predict.external_input[:]
        predict.external_input.extend([zoo.input_name] + self.params)
        del predict.external_output[:]
        predict.external_output.append(zoo.output_name)
        self.name = predict.name or "model"
        self.input_name, self.input_shape = zoo.input_name, zoo.input_shape
        self.output_name = zoo.output_name

    def init_net(self):
        init = caffe2_pb2.NetDef(name=self.name + "_init")
        init.op.extend(given_fill(name, self.values[name]) for name in self.params)
        init.external_output.extend(self.params)
        return init

    def zoo_model(self):
        z = self.zoo
        return ZooModel(self.init_net(), self.predict_net, z.input_name, z.input_shape, z.input_dtype,
                        output_name=z.output_name, class_names=z.class_names)

    def run(self, inputs):
        """The deploy net's output on `inputs`, computed in a private workspace."""
        feeds = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.values.items()}
        feeds[self.input_name] = torch.from_numpy(np.ascontiguousarray(inputs))
        blobs = _nets.run_in_private_workspace([self.predict_net], feeds, name="export-run")
        return blobs


def deploy_model(model, weights=None):
    """(ZooModel with a clean inference predict net and a GivenTensorFill init net,
    {blob: ndarray} of every parameter). weights default to the current workspace's blobs."""
    deploy = InferenceForm(model, weights)
    return deploy.zoo_model(), deploy.values


def _gather(names, weights):
    if weights is None:
        missing = [n for n in names if not workspace.HasBlob(n)]
        if missing:
            raise ExportError("export: the current workspace lacks %s (run the model's init net "
                              "and training first, or pass weights=)" % ", ".join(missing))
        return {n: np.asarray(workspace.FetchBlob(n)) for n in names}
    missing = [n for n in names if n not in weights]
    if missing:
        raise ExportError("export: weights lacks %s" % ", ".join(missing))
    return {n: _nets.to_numpy(weights[n]) for n in names}


def _inference_net(predict_net):
    """A copy with test-mode Dropout/SpatialBN, training-only outputs dropped, no engine hints."""
    net = _nets.clone(predict_net)
    for op in net.op:
        if op.type in ("Dropout", "SpatialBN"):
            set_arg(op, "is_test", 1)
            del op.output[1:]
        op.engine = ""
        keep = [a for a in op.arg if a.name not in ("exhaustive_search", "cudnn_exhaustive_search",
                                                      "ws_nbytes_limit")]
        del op.arg[:]
        op.arg.extend(keep)
        op.ClearField("device_option")
    net.ClearField("device_option")
    return net


# ---------------------------------------------------------------------- writing a folder
def write_deploy(model, dest, weights=None, class_names=None, metadata=None):
    """Write a deployable Model Zoo folder; returns the ZooModel loaded back from it.

    metadata: a ModelMetadata (mean, crop, resize) for preprocess.json; its blob names are the
    model's own. class_names: a list or a labels file; default the metadata's or the model's."""
    deployed, _ = deploy_model(model, weights)
    if isinstance(class_names, (str, os.PathLike)):
        class_names = read_labels(class_names)
    metadata = metadata or ModelMetadata()
    names = class_names or metadata.class_names or deployed.class_names
    if names is not None and len(names) != deployed.num_classes:
        raise ExportError("export: %d class names for a %d-way model" % (len(names), deployed.num_classes))
    height, width = deployed.input_shape[-2:]
    metadata = metadata.replace(input_name=deployed.input_name, output_name=deployed.output_name,
                                crop=int(metadata.crop or (width if height == width else 0)),
                                class_names=tuple(names) if names else None)
    os.makedirs(dest, exist_ok=True)
    save_net(deployed.init_net, os.path.join(dest, "init_net.pb"))
    save_net(deployed.predict_net, os.path.join(dest, "predict_net.pb"))
    shape = list(deployed.input_shape)
    if metadata.crop:  # the size it was trained at, not the zoo's 227 (no crop: the model's own)
        shape[-2:] = [metadata.crop, metadata.crop]
    write_value_info(os.path.join(dest, "value_info.json"), deployed.input_name, shape,
                     deployed.input_dtype)
    if names:
        write_labels(os.path.join(dest, LABELS), names)
    if metadata.mean_image is not None:
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(metadata.mean_image, np.float32), allow_pickle=False)
        write_bytes(os.path.join(dest, MEAN_IMAGE), buffer.getvalue())
    write_text(os.path.join(dest, PREPROCESS), json.dumps(metadata.preprocess_json(), indent=1) + "\n")
    return load(dest)


def to_caffe2(model, dest, weights=None, class_names=None, mean_bgr=BGR_MEAN, crop=None):
    """write_deploy with the mean and crop given one by one (crop None: the model's input)."""
    return write_deploy(model, dest, weights, class_names,
                        ModelMetadata(mean_bgr=tuple(mean_bgr) if mean_bgr is not None else None,
                                      crop=crop or 0))
