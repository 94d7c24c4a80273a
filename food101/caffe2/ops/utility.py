"""Inspection ops: Summarize (min/max/mean/std of a blob), Print (log a blob's values) and
AccumulateHistogram (bucket counts of a blob, this run's and accumulated over the op's runs).

Both are side-effect ops for debugging nets. With `to_file=1` Caffe2 writes to a file in the
workspace's root folder, truncated when the op is created: `<root>/<blob>.summary` (with '/'
in the blob name replaced by '#') for Summarize and `<root>/<blob>.log` for Print. The root is
`ctx.workspace.root_folder` when the workspace has one, else the current directory (Caffe2's
default root folder is "."). Without a file, Print logs through Python logging (logger
`food101.caffe2.ops.utility`, level INFO, as Caffe2's LOG(INFO)).
"""
import logging
import os

import numpy as np
import torch

from food101.caffe2.errors import enforce
from food101.caffe2.ops.registry import operator

log = logging.getLogger(__name__)

# Caffe2's TensorPrinter default when limit=0.
PRINT_LIMIT_DEFAULT = 1000
CAFFE2_TYPE_NAMES = {
    torch.float32: "float", torch.float64: "double", torch.float16: "at::Half",
    torch.bfloat16: "c10::BFloat16", torch.int32: "int", torch.int64: "long", torch.int16: "short",
    torch.int8: "signed char", torch.uint8: "unsigned char", torch.bool: "bool",
}


class _OpFile:
    """A per-op log file opened (and truncated) on first use, appended to afterwards."""

    def __init__(self):
        self.path = None

    def write(self, ctx, filename, line):
        mode = "a"
        if self.path is None:
            root = getattr(ctx.workspace, "root_folder", None) or "."
            self.path, mode = os.path.join(root, filename), "w"
        with open(self.path, mode) as fh:
            fh.write(line + "\n")


class _Occurrences:
    """Print's every_n counter: true on runs 1, 1 + n, 1 + 2n, ..."""

    def __init__(self, every_n):
        self.every_n, self.count = every_n, 0

    def due(self):
        self.count = self.count % self.every_n + 1
        return self.count == 1


def _summarize_state(kwargs):
    kwargs["state"] = _OpFile()
    return kwargs


@operator("Summarize", grad_inputs=(), context=True, prepare=_summarize_state)
def summarize(X, *, to_file=0, state=None, ctx):
    """-> float32 [min, max, mean, std]; std is the unbiased (N - 1) one, 0 for one element."""
    enforce(isinstance(X, torch.Tensor) and X.numel() > 0,
            "Summarize: input %r must be a non-empty tensor" % ctx.op.input[0])
    x = X.detach().reshape(-1).double()
    std = x.std() if x.numel() > 1 else x.new_zeros(())
    stats = torch.stack([x.min(), x.max(), x.mean(), std]).float()
    if to_file:
        values = [float(v) for v in stats.tolist()]
        state.write(ctx, ctx.op.input[0].replace("/", "#") + ".summary",
                    " ".join(_c_number(v) for v in values))
    return stats


def _print_state(kwargs):
    enforce(kwargs["every_n"] >= 1, "Print: every_n must be >= 1, got %r" % kwargs["every_n"])
    kwargs["state"] = (_Occurrences(kwargs["every_n"]), _OpFile())
    return kwargs


@operator("Print", grad_inputs=(), context=True, prepare=_print_state)
def print_op(X, *, to_file=0, limit=0, every_n=1, state=None, ctx):
    """Log `Tensor <name> of type <t>. Dims: (d0,d1,): v0,v1,...` (Caffe2's TensorPrinter
    format, at most `limit` values, 1000 when 0) on the 1st, (1+every_n)th, ... run."""
    occurrences, out_file = state
    if not occurrences.due():
        return None
    name = ctx.op.input[0]
    line = format_tensor(name, X, limit or PRINT_LIMIT_DEFAULT)
    if to_file:
        out_file.write(ctx, name + ".log", line)
    else:
        log.info("%s", line)
    return None


def format_tensor(name, X, limit=PRINT_LIMIT_DEFAULT):
    """One line as Caffe2's TensorPrinter writes it."""
    if isinstance(X, torch.Tensor):
        type_name = CAFFE2_TYPE_NAMES.get(X.dtype, str(X.dtype).replace("torch.", ""))
        values = X.detach().reshape(-1)[:limit].cpu().tolist()
        dims = list(X.shape)
    elif isinstance(X, np.ndarray):
        type_name = "std::string" if X.dtype == object else str(X.dtype)
        values = X.reshape(-1)[:limit].tolist()
        dims = list(X.shape)
    else:
        return "Blob of type: %s" % type(X).__name__
    shape = "".join("%d," % d for d in dims)
    meta = "Tensor %s of type %s. Dims: (%s): " % (name, type_name, shape)
    return meta + ",".join(_c_number(v) for v in values)


def _c_number(v):
    """A value as a C++ ostream prints it by default (6 significant digits, bools as 0/1)."""
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return "%g" % v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def _histogram_state(kwargs):
    enforce(kwargs["num_buckets"] >= 1, "AccumulateHistogram: num_buckets must be >= 1, got %r"
            % kwargs["num_buckets"])
    kwargs["state"] = {"accumulated": None}  # the op instance's running totals, as in Caffe2
    return kwargs


@operator("AccumulateHistogram", grad_inputs=(), prepare=_histogram_state)
def accumulate_histogram(X, *, lower_bound=0.0, upper_bound=1.0, num_buckets=1, state=None):
    """-> (this run's histogram, histogram over every run of this op), int64, num_buckets + 2
    bins: [-inf, lower), num_buckets equal bins of [lower, upper), [upper, inf)."""
    x = X.detach().reshape(-1).float()
    segment = (upper_bound - lower_bound) / num_buckets
    inside = ((x - lower_bound) / segment + 1).clamp(1, num_buckets).long()
    bucket = torch.where(x < lower_bound, torch.zeros_like(inside),
                         torch.where(x >= upper_bound, torch.full_like(inside, num_buckets + 1),
                                     inside))
    current = torch.bincount(bucket, minlength=num_buckets + 2)
    total = current if state["accumulated"] is None else state["accumulated"] + current
    state["accumulated"] = total
    return current, total.clone()
