"""Helpers for the Caffe translator tests: the real Caffe nets copied under tests/data/caffe_nets
and the random-weight caffemodels of tests/data/caffe_reference/tools/make_translator_fixtures.py
(same RandomState draws, written with the project's own Caffe schema)."""
import json
import os

import numpy as np

from tests.support import REPO

NETS = os.path.join(REPO, "tests", "data", "caffe_nets")
FIXTURES = os.path.join(REPO, "tests", "data", "caffe_reference", "translator")


def net_path(*parts):
    return os.path.join(NETS, *parts)


def case(name):
    with open(os.path.join(FIXTURES, name + ".json")) as f:
        spec = json.load(f)
    with np.load(os.path.join(FIXTURES, name + "_outputs.npz")) as z:
        outputs = {k.replace("|", "/"): z[k] for k in z.files}
    return spec, outputs


def draw(seed, params):
    """The generator's weights: He-scaled Gaussians for weights, small Gaussians for biases."""
    rng = np.random.RandomState(seed)
    weights = {}
    for name, shapes in params:
        arrays = []
        for shape in shapes:
            if len(shape) > 1:
                fan_in = int(np.prod(shape[1:]))
                arrays.append((rng.randn(*shape) * np.sqrt(2.0 / fan_in)).astype(np.float32))
            else:
                arrays.append((rng.randn(*shape) * 0.05).astype(np.float32))
        weights[name] = arrays
    return weights


def caffemodel(layers, name="random_weights", legacy_blobs=False):
    """A NetParameter holding `layer name -> [arrays]` as a .caffemodel does (float32 blobs,
    BlobProto `shape`, or legacy num/channels/height/width)."""
    from food101.interop.caffe import caffe_pb2
    model = caffe_pb2.NetParameter(name=name)
    for layer_name, arrays in layers.items():
        layer = model.layer.add(name=layer_name)
        for a in arrays:
            a = np.asarray(a, np.float32)
            blob = layer.blobs.add()
            if legacy_blobs:
                dims = [1] * (4 - a.ndim) + list(a.shape)
                blob.num, blob.channels, blob.height, blob.width = dims
            else:
                blob.shape.dim.extend(a.shape)
            blob.data.extend(a.ravel().tolist())
    return model


def write_caffemodel(path, spec, legacy_blobs=False):
    """The case's weights as a .caffemodel (BlobProto `shape`, or legacy num/channels/h/w)."""
    model = caffemodel(draw(spec["seed"], spec["params"]), legacy_blobs=legacy_blobs)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path


def case_input(spec):
    return np.random.RandomState(spec["seed"] + 1).randn(*spec["input"]).astype(np.float32)
