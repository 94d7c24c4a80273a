"""Checkpoints: everything a run needs to continue exactly where it stopped, written atomically.

One checkpoint is one `torch.save` file:

    {format, iteration,
     blobs:   {name: CPU tensor}    params (trained and frozen), momentum blobs, the Iter counter,
                                    lr and every other blob the nets keep between iterations
     reader:  the training reader's state_dict (epoch, position, shuffle order)
     rng:     torch / CUDA / numpy / python states, the workspace's per-device generators and
              the augmentation generator
     config:  the effective config as a plain dict
     trainer: the loop's own state (smoothed-loss window, best accuracy, the diagnostics'
              state: the divergence guard's lr scaling, quarantine and loss window, ...)}

Writing goes through `food101.fileio.atomic_write` (a temporary file in the same folder, fsync,
`os.replace`), so a crash (or a second Ctrl-C) never leaves a half-written checkpoint under the
real name.
`latest_checkpoint(folder)` finds the newest `*_iter_<N>.ckpt` for `--resume FOLDER`.
"""
import glob
import os
import random
import re

import numpy as np
import torch

from food101.fileio import atomic_write

FORMAT = "food101-checkpoint/1"
SUFFIX = ".ckpt"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or not one of ours."""


def checkpoint_path(prefix, iteration):
    """Caffe's snapshot naming: <prefix>_iter_<N>.ckpt."""
    return "%s_iter_%d%s" % (prefix, iteration, SUFFIX)


def capture_rng(workspace=None, extra_generators=None):
    """The state of every RNG a training run draws from."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if workspace is not None:
        state["workspace"] = {k: v.clone() for k, v in workspace.rng_state().items()}
    if extra_generators:
        state["generators"] = {name: gen.get_state() for name, gen in extra_generators.items()}
    return state


def restore_rng(state, workspace=None, extra_generators=None):
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if workspace is not None and "workspace" in state:
        workspace.set_rng_state(state["workspace"])
    for name, gen in (extra_generators or {}).items():
        if name in state.get("generators", {}):
            gen.set_state(state["generators"][name])


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    return value


def save_checkpoint(path, *, iteration, blobs, reader=None, rng=None, config=None, trainer=None):
    """Write one checkpoint atomically; returns `path`."""
    payload = {
        "format": FORMAT,
        "iteration": int(iteration),
        "blobs": {name: _to_cpu(v) for name, v in blobs.items()},
        "reader": reader,
        "rng": rng,
        "config": config,
        "trainer": trainer or {},
    }
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with atomic_write(path) as f:
        torch.save(payload, f)
    return path


def load_checkpoint(path):
    """The checkpoint dict; `path` may be a file or a folder (its newest checkpoint)."""
    if os.path.isdir(path):
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError("no checkpoint (*_iter_<N>%s) in folder %s" % (SUFFIX, path))
        path = found
    if not os.path.exists(path):
        raise CheckpointError("checkpoint %s does not exist" % path)
    try:
        # Our own files hold numpy RNG state and plain dicts: not loadable with weights_only.
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many kinds for a damaged file
        raise CheckpointError("cannot read checkpoint %s: %s" % (path, e)) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError("%s is not a food101 training checkpoint (format %r)"
                              % (path, payload.get("format") if isinstance(payload, dict) else None))
    payload["path"] = os.path.abspath(path)
    return payload


def latest_checkpoint(folder):
    """The checkpoint with the highest iteration under `folder` (searched recursively), or None."""
    best, best_iter = None, -1
    for p in glob.glob(os.path.join(folder, "**", "*" + SUFFIX), recursive=True):
        m = re.search(r"_iter_(\d+)%s$" % re.escape(SUFFIX), p)
        if m and int(m.group(1)) > best_iter:
            best, best_iter = p, int(m.group(1))
    return best


