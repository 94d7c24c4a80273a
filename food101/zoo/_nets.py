"""Model-level NetDef helpers shared by the zoo, the fine-tune builder and the exporters
(OperatorDef/Argument plumbing itself is food101.caffe2.utils)."""
import copy

import numpy as np
import torch

from food101.caffe2.executor import PreparedNet
from food101.caffe2.utils import ArgsToDict
from food101.caffe2.workspace import Workspace


def clone(netdef):
    return copy.deepcopy(netdef)


def init_shapes(init_net):
    """{blob: shape} for init ops that state a `shape` argument (all fills do, in zoo nets)."""
    shapes = {}
    for op in init_net.op:
        args = ArgsToDict(op.arg)
        if "shape" in args and not op.input:
            for out in op.output:
                shapes[out] = tuple(int(d) for d in args["shape"])
    return shapes


def run_in_private_workspace(nets, feeds=None, name="zoo-private"):
    """Run NetDefs in a fresh Workspace that is not the current one; return its blob dict.

    Used to inspect a model (shapes, weights) without touching the user's workspace."""
    ws = Workspace(name)
    for key, value in (feeds or {}).items():
        ws.blobs[key] = value if isinstance(value, torch.Tensor) else torch.from_numpy(
            np.ascontiguousarray(value))
    for net in nets:
        PreparedNet(net, ws).run()
    return ws.blobs


def to_numpy(value):
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.dtype == torch.bfloat16:
            value = value.float()
        return value.cpu().numpy()
    return np.asarray(value)
