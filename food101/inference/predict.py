"""Inference with a trained model: a Caffe2 deploy folder or a training checkpoint.

    image file ──OpenCV decode (BGR)──► resize like build_lmdb (shorter side to S, centre S x S)
               ──► centre crop (crop x crop) ──► minus the BGR mean ──► net ──► top-5 classes

`load_model(path)` accepts:
- a deploy folder (`init_net.pb`, `predict_net.pb`, `preprocess.json`, `labels.txt`), as
  `fine_tune` exports to `<output_dir>/deploy` and `food101.interop.export.to_caffe2` writes;
- a checkpoint file (`*.ckpt`) or a snapshot folder (its newest checkpoint): the test net and
  every blob are stored inside, so no zoo files are needed;
- a run's output folder: its `deploy/` when present, else its newest checkpoint.

The model runs in a workspace of its own ("food101_inference"), so it never disturbs a training
workspace or the notebook's.
"""
import os

import numpy as np
import torch

from food101 import checkpoint as ckpt
from food101.caffe2 import core
from food101.caffe2.errors import Caffe2Error
from food101.caffe2.executor import PreparedNet
from food101.caffe2.proto import caffe2_pb2, load_net
from food101.data.augment import center_crop
from food101.data.decode import BadImage, load_record_image
from food101.caffe2.workspace import Workspace
from food101.interop.deploy import ModelMetadata, read_metadata
from food101.zoo._nets import run_in_private_workspace
from food101.zoo.model import ZooError

INFERENCE_WORKSPACE = "food101_inference"


class InferenceModel:
    """A predict NetDef, its blobs and its ModelMetadata; `probabilities(batch)` runs it in a
    workspace of its own (never the caller's current one)."""

    def __init__(self, netdef, blobs, metadata, source=None, device="cpu"):
        self.netdef, self.metadata = netdef, metadata
        self.input_name, self.output_name = metadata.input_name, metadata.output_name
        self.class_names = list(metadata.class_names) if metadata.class_names is not None else None
        self.crop = int(metadata.crop)
        self.mean_bgr = tuple(float(m) for m in metadata.mean_bgr) if metadata.mean_bgr else None
        self.mean = metadata.mean   # the per-channel means, or a Caffe mean_file's image
        # build_lmdb stores 256 x 256 for the 227 crop; keep that ratio when nothing says more
        self.resize_size = int(metadata.resize_size or round(self.crop * 256 / 227))
        self.resize_mode = metadata.resize or "crop"
        self.source = source
        self.device = torch.device(device)
        self._blobs = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in blobs.items()}
        self._workspace = Workspace(INFERENCE_WORKSPACE)
        self._net = None

    def class_name(self, index):
        return self.class_names[index] if self.class_names else "class_%d" % index

    def __repr__(self):
        return "<InferenceModel %s: %s classes, crop %d, from %s>" % (
            self.netdef.name, len(self.class_names) if self.class_names else "?", self.crop, self.source)

    def probabilities(self, batch):
        """Float NCHW batch (mean subtracted) -> N x C probabilities (torch, on CPU)."""
        blobs = self._workspace.blobs
        blobs[self.input_name] = batch.detach().to(self.device)
        try:
            if self._net is None:  # prepared once, in this model's own workspace
                blobs.update(self._blobs)
                self._net = PreparedNet(self.netdef, self._workspace)
            self._net.run()
            out = blobs[self.output_name]
        except (Caffe2Error, KeyError) as e:   # a damaged net fails here, not at load: name it
            self._net = None
            raise ZooError("the model from %s does not run: %s" % (self.source, e)) from None
        return out.detach().float().reshape(out.shape[0], -1).cpu()

    def preprocess(self, image_paths, errors=None):
        """Image files -> float NCHW batch, exactly as the LMDB records and evaluation see them.

        errors: None raises ValueError at the first unreadable image; a list collects
        (path, reason) for each and leaves it out. Returns the batch, or with `errors` given
        (batch or None, the paths in the batch)."""
        chw, good = [], []
        for path in image_paths:
            try:
                if not os.path.isfile(path):
                    raise BadImage("no such file" if not os.path.exists(path) else "not a file")
                image, _ = load_record_image(path, self.resize_size, self.resize_mode)
            except (BadImage, OSError) as e:
                if errors is None:
                    raise ValueError("%s: cannot read the image (%s)" % (path, e)) from None
                errors.append((path, "cannot read the image (%s)" % e))
                continue
            chw.append(image)
            good.append(path)
        if chw and _mean_image_mismatch(self.metadata, chw[0].shape):
            raise ValueError(
                "the model from %s subtracts a %s mean image (a Caffe mean_file) at each pixel's "
                "position, but predict resizes images to %s (build_lmdb's size %d, %s), so it "
                "cannot apply it; evaluate on an LMDB of the training records' size "
                "(tools/evaluate.py) instead" % (
                    self.source, "x".join(map(str, self.metadata.mean_image.shape)),
                    "x".join(map(str, chw[0].shape)), self.resize_size, self.resize_mode))
        batch = center_crop(np.stack(chw), self.crop, mean=self.mean) if chw else None
        return batch if errors is None else (batch, good)


def _mean_image_mismatch(metadata, image_shape):
    """True when the metadata's mean image does not have the C x H x W of the images."""
    image = metadata.mean_image
    return image is not None and tuple(image.shape) != tuple(image_shape)


def _load_deploy(folder, device):
    predict = load_net(os.path.join(folder, "predict_net.pb"))
    init_path = os.path.join(folder, "init_net.pb")
    init = load_net(init_path)
    try:
        blobs = run_in_private_workspace([init])
    except Caffe2Error as e:
        raise ZooError("%s does not run: %s" % (init_path, e)) from None
    if not predict.external_input or not predict.external_output:
        raise ZooError("%s: the predict net names no external input/output blob"
                       % os.path.join(folder, "predict_net.pb"))
    return InferenceModel(predict, blobs, read_metadata(folder, predict), source=folder,
                          device=device)


def _load_checkpoint(path, device):
    state = ckpt.load_checkpoint(path)
    trainer = state.get("trainer") or {}
    if "test_net" not in trainer:
        raise ckpt.CheckpointError("%s holds no test net (not written by food101.train)" % state["path"])
    net = caffe2_pb2.NetDef.FromString(trainer["test_net"])
    io = trainer["io"]
    _strip_devices(net)
    image = io.get("mean_image")  # a Caffe mean_file's image, subtracted instead of the mean
    metadata = ModelMetadata(input_name=io["data"], output_name=io["probs"],
                             mean_bgr=tuple(io["mean"]) if image is None else None,
                             mean_image=image.numpy() if image is not None else None,
                             crop=io["crop_size"],
                             class_names=tuple(trainer["class_names"]),
                             resize_size=io.get("resize_size"), resize=io.get("resize", "crop"))
    return InferenceModel(net, state["blobs"], metadata, source=state["path"], device=device)


def _strip_devices(netdef):
    """Run where the caller says: the device of the training run does not travel."""
    netdef.ClearField("device_option")
    for op in netdef.op:
        op.ClearField("device_option")


def load_model(path, device="cpu"):
    """An InferenceModel from a deploy folder, a checkpoint (file or folder) or a run folder."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError("%s does not exist (expected a deploy folder, a .ckpt checkpoint "
                                "or a training output folder)" % path)
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "predict_net.pb")):
            model = _load_deploy(path, device)
        elif os.path.exists(os.path.join(path, "deploy", "predict_net.pb")):
            model = _load_deploy(os.path.join(path, "deploy"), device)
        else:
            model = _load_checkpoint(path, device)
    else:
        model = _load_checkpoint(path, device)
    if device != "cpu" and torch.device(device).type == "cuda":
        opt = core.DeviceOption(caffe2_pb2.CUDA, torch.device(device).index or 0)
        model.netdef.device_option.CopyFrom(opt)
    return model


def predict(model, image_paths, top_k=5, batch_size=32, errors=None):
    """[(path, [(class name, probability), ...top_k])] for each image.

    errors: None raises ValueError for the first image that cannot be read; a list gets
    (path, reason) for each such image, and the others are predicted."""
    if not isinstance(model, InferenceModel):
        model = load_model(model)
    results = []
    for start in range(0, len(image_paths), batch_size):
        chunk = list(image_paths[start:start + batch_size])
        if errors is None:
            batch = model.preprocess(chunk)
        else:
            batch, chunk = model.preprocess(chunk, errors=errors)
            if batch is None:
                continue
        probs = model.probabilities(batch)
        k = min(top_k, probs.shape[1])
        values, indices = probs.topk(k, dim=1)
        for path, vals, idxs in zip(chunk, values.tolist(), indices.tolist()):
            results.append((path, [(model.class_name(i), v) for i, v in zip(idxs, vals)]))
    return results


def format_predictions(results):
    lines = []
    for path, top in results:
        lines.append(path)
        for rank, (name, p) in enumerate(top, 1):
            lines.append("  %d. %-28s %6.2f%%" % (rank, name, 100.0 * p))
    return lines
