"""caffe2.python.memonger: blob-sharing memory optimisations, here as identities.

Caffe2 allocated one buffer per blob for the life of the workspace, so memonger renamed blobs
whose lifetimes do not overlap to share buffers (gradients, inference activations). On torch
that is already done: every intermediate is a tensor freed (to the caching allocator) as soon
as nothing references it, and autograd keeps only what backward needs. So every optimiser here
returns an *equivalent* net, a copy of the one given, which runs exactly as before; scripts
that call memonger keep working and use no more memory than the optimised Caffe2 net did.
`verify_graph_equality` / `verify_inplace_blobs` do check what they say.
"""
import collections
import copy
import enum

import numpy as np

from food101.caffe2 import workspace
from food101.caffe2.proto import caffe2_pb2

Optimization = collections.namedtuple("Optimization", ["net", "assignments", "blob_assignments"])
Statistics = collections.namedtuple("Statistics", ["baseline_nbytes", "optimized_nbytes"])


class AssignmentAlgorithm(enum.Enum):
    GREEDY = 0
    DYNAMIC_PROGRAMMING = 1


def _netdef_copy(net):
    proto = net.Proto() if hasattr(net, "Proto") else net
    out = caffe2_pb2.NetDef()
    out.CopyFrom(proto)
    return out


def share_grad_blobs(net, losses, param_grads, namescope, dont_share_blobs=None,
                     share_activations=False, blob_shapes=None):
    """Returns a NetDef equivalent to `net` (assign it to net._net as in Caffe2): torch frees
    each gradient as soon as it is consumed, which is the sharing Caffe2 had to arrange."""
    return _netdef_copy(net)


def optimize_inference_for_dag(net, input_blobs, namescope=""):
    """Returns a NetDef equivalent to `net`; torch frees dead activations itself."""
    return _netdef_copy(net)


def optimize_inference_fast(net, static_blobs):
    """Returns a NetDef equivalent to `net`; torch frees dead activations itself."""
    return _netdef_copy(net)


def optimize_interference(net, static_blobs, ordering_function=None, blob_sizes=None,
                          algo=AssignmentAlgorithm.GREEDY):
    """Optimization(net=an equivalent NetDef, assignments=[], blob_assignments={}): no blob is
    renamed, since torch already releases each blob when its last user is done."""
    return Optimization(net=_netdef_copy(net), assignments=[], blob_assignments={})


def release_blobs_when_used(netproto, dont_free_blobs, selector_fun=None):
    """Returns `netproto` unchanged (a copy): blobs are released when no longer referenced."""
    return _netdef_copy(netproto)


def verify_inplace_blobs(net_a, net_b):
    """True when both nets have the same op types and the same in-place input->output pairs."""
    def inplace_pairs(op):
        outputs = list(op.output)
        return [(i, outputs.index(b)) for i, b in enumerate(op.input) if b in outputs]
    return all(a.type == b.type and inplace_pairs(a) == inplace_pairs(b)
               for a, b in zip(net_a.op, net_b.op))


def verify_graph_equality(net_a, net_b):
    """True when both nets run the same ops (type, device, engine) with the same data flow:
    each op reads from the same producing ops, whatever the blobs are called."""
    def producers(ops):
        owner, result = {}, []
        for index, op in enumerate(ops):
            result.append([owner[b] for b in op.input if b in owner])
            owner.update((b, index) for b in op.output)
        return result
    if len(net_a.op) != len(net_b.op):
        return False
    for a, b in zip(net_a.op, net_b.op):
        if a.type != b.type or a.device_option != b.device_option or a.engine != b.engine:
            return False
    return producers(net_a.op) == producers(net_b.op)


def blob_nbytes(blob):
    """Bytes of a workspace blob (0 when it does not exist or holds no tensor)."""
    try:
        value = workspace.FetchBlob(blob)
    except Exception:  # noqa: BLE001 - a missing or non-tensor blob counts as nothing
        return 0
    return int(np.asarray(value).nbytes) if isinstance(value, np.ndarray) else 0


def collect_blob_sizes(net):
    proto = net.Proto() if hasattr(net, "Proto") else net
    names = {b for op in proto.op for b in list(op.input) + list(op.output)}
    return {name: blob_nbytes(name) for name in names}


def compute_statistics(assignments):
    """Bytes of the blobs in `assignments` (lists of (blob, range)) before and after sharing;
    with the empty assignments this module makes, both are 0."""
    baseline = sum(blob_nbytes(blob) for group in assignments for blob, _ in group)
    shared = sum(max((blob_nbytes(blob) for blob, _ in group), default=0) for group in assignments)
    return Statistics(baseline_nbytes=baseline, optimized_nbytes=shared)
