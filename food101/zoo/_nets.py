"""Small NetDef utilities shared by the zoo, the fine-tune builder and the exporters."""
import copy

import numpy as np
import torch

from food101.caffe2.core import MakeArgument
from food101.caffe2.executor import PreparedNet, external_reads  # noqa: F401 (re-exported)
from food101.caffe2.ops.registry import argument_value
from food101.caffe2.proto import caffe2_pb2
from food101.caffe2.workspace import Workspace

# Init-net ops whose `values` argument holds the tensor itself (Caffe2's GivenTensor*Fill).
GIVEN_FILLS = {
    "GivenTensorFill": np.float32,
    "GivenTensorDoubleFill": np.float64,
    "GivenTensorIntFill": np.int32,
    "GivenTensorInt64Fill": np.int64,
    "GivenTensorInt16Fill": np.int16,
    "GivenTensorBoolFill": np.bool_,
    "GivenTensorByteStringToUInt8Fill": np.uint8,
}


def op_args(op):
    """OperatorDef.arg as a {name: python value} dict."""
    return {a.name: argument_value(a) for a in op.arg}


def make_op(op_type, inputs, outputs, name="", **args):
    op = caffe2_pb2.OperatorDef(type=op_type, input=list(inputs), output=list(outputs), name=name)
    for key, value in args.items():
        if value is not None:
            op.arg.append(MakeArgument(key, value))
    return op


def set_arg(op, key, value):
    """Replace (or add) one argument of `op` in place."""
    keep = [a for a in op.arg if a.name != key]
    del op.arg[:]
    op.arg.extend(keep)
    op.arg.append(MakeArgument(key, value))


def clone(netdef):
    return copy.deepcopy(netdef)


def given_fill(name, array):
    """A GivenTensorFill-family op that recreates `array` (the zoo's init-net format)."""
    array = np.asarray(array)
    if array.dtype == np.float32 or array.dtype.kind == "f" and array.dtype != np.float64:
        op_type, values = "GivenTensorFill", array.astype(np.float32).ravel().tolist()
    elif array.dtype == np.float64:
        op_type, values = "GivenTensorDoubleFill", array.ravel().tolist()
    elif array.dtype == np.int64:
        op_type, values = "GivenTensorInt64Fill", array.ravel().tolist()
    elif array.dtype == np.bool_:
        op_type, values = "GivenTensorBoolFill", array.astype(np.int32).ravel().tolist()
    elif array.dtype.kind in "iu":
        op_type, values = "GivenTensorIntFill", array.astype(np.int32).ravel().tolist()
    else:
        raise TypeError("blob %r: cannot write dtype %s into an init net" % (name, array.dtype))
    op = make_op(op_type, [], [name], shape=list(array.shape))
    arg = caffe2_pb2.Argument(name="values")
    if op_type in ("GivenTensorFill", "GivenTensorDoubleFill"):
        arg.floats.extend(values)
    else:
        arg.ints.extend(int(v) for v in values)
    op.arg.append(arg)
    return op


def given_fill_value(op):
    """The array a GivenTensor*Fill op creates, read from its arguments (no execution)."""
    args = op_args(op)
    dtype = GIVEN_FILLS[op.type]
    shape = tuple(args.get("shape", ()))
    values = np.asarray(args.get("values", []), dtype=dtype)
    if values.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError("%s %r: shape %s needs %d values, has %d" % (
            op.type, op.output[0], list(shape), int(np.prod(shape)), values.size))
    return values.reshape(shape)


def init_shapes(init_net):
    """{blob: shape} for init ops that state a `shape` argument (all fills do, in zoo nets)."""
    shapes = {}
    for op in init_net.op:
        args = op_args(op)
        if "shape" in args and not op.input:
            for out in op.output:
                shapes[out] = tuple(int(d) for d in args["shape"])
    return shapes


def produced_before(netdef):
    """For each op index, the set of blobs produced by the ops before it."""
    produced, result = set(), []
    for op in netdef.op:
        result.append(set(produced))
        produced.update(op.output)
    return result




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
