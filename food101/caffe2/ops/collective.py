"""Collective ops: CreateCommonWorld, DestroyCommonWorld, Allreduce, Broadcast, Barrier.

Caffe2 shipped these in caffe2/contrib/gloo (and NCCL variants); its data_parallel_model put
them into nets to keep the replicas of a model in step. Here they run on the engine torch
itself uses for distributed training, `torch.distributed`: NCCL for CUDA tensors, Gloo for CPU
tensors, with the process group set up by `torchrun` + `food101.train.distributed.init_distributed`
(or any `torch.distributed.init_process_group`). Nothing here implements a transport.

    param_init_net:  CreateCommonWorld([], "comm_world")          # the default process group
                     Broadcast(["comm_world", w, b], [w, b], root=0)
    net:             ... AutogradGradient -> w_grad, b_grad
                     Allreduce(["comm_world", w_grad, b_grad], [w_grad, b_grad])
                     MomentumSGDUpdate ...

As every op here, the collectives are functional: `Allreduce` copies its inputs into flat
buckets (about `bucket_cap_mb` MB each, per device and dtype), all-reduces the buckets with
asynchronous handles that overlap one another, and returns new tensors (views into the reduced
buckets); the input blobs are never written in place. Caffe2's Allreduce sums; `average=1` (a
food101 extension) divides by the world size. They belong between compiled graphs
(`compiled.EAGER_ONLY`), like the DB readers.

The first input may be the common world (Caffe2's form) or a gradient already: without one the
default process group is used. A peer that dies or stops answering makes the op raise
`CollectiveError` naming this rank and the world size, instead of a bare Gloo/NCCL message.
"""
import datetime

import torch

from food101.caffe2.errors import Caffe2Error, enforce
from food101.caffe2.ops.registry import operator

DEFAULT_BUCKET_CAP_MB = 25.0


class CollectiveError(Caffe2Error):
    """A collective could not complete: a peer exited, timed out or the group is not set up."""


class CommonWorld:
    """The blob CreateCommonWorld makes: a torch.distributed process group (None = the default
    group). Pickles as a marker (a checkpoint of every blob still works); after unpickling it
    refers to the default group of the process that loads it."""

    def __init__(self, group=None, timeout=None):
        self.group = group
        self.timeout = timeout

    @property
    def rank(self):
        return torch.distributed.get_rank(self.group)

    @property
    def size(self):
        return torch.distributed.get_world_size(self.group)

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.group, self.timeout = None, None

    def __repr__(self):
        if not torch.distributed.is_initialized():
            return "<common world (torch.distributed not initialised)>"
        return "<common world: rank %d of %d, %s>" % (self.rank, self.size,
                                                       torch.distributed.get_backend(self.group))


def _require_initialized(op_type):
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise CollectiveError(
            "%s needs torch.distributed: launch one process per device with torchrun "
            "(torchrun --nproc_per_node N ...) and call food101.train.distributed."
            "init_distributed() (or torch.distributed.init_process_group) before running the "
            "net" % op_type)


def _split_world(op_type, inputs):
    """(CommonWorld, tensors) from an op's inputs; the world is optional (default group)."""
    _require_initialized(op_type)
    if inputs and isinstance(inputs[0], CommonWorld):
        return inputs[0], inputs[1:]
    return CommonWorld(), inputs


def _check_tensors(op_type, tensors):
    for i, t in enumerate(tensors):
        enforce(isinstance(t, torch.Tensor),
                "%s: input %d must be a tensor, got %s (the common world, when given, is input 0)"
                % (op_type, i, type(t).__name__))


def _failed(op_type, error):
    """A CollectiveError that says what happened and what to do."""
    try:
        rank, size = torch.distributed.get_rank(), torch.distributed.get_world_size()
    except Exception:  # noqa: BLE001 - the group itself may be gone
        rank, size = "?", "?"
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return CollectiveError(
        "%s failed on rank %s of %s: another rank exited, crashed or stopped answering within "
        "the process group timeout (%s: %s). Every rank must take part in every step, so this "
        "run cannot go on; restart all ranks from the last checkpoint (tools/train.py "
        "--distributed --resume <snapshot folder>)" % (op_type, rank, size, type(error).__name__,
                                                      first_line[:300]))


def _buckets(tensors, cap_bytes):
    """Index lists of tensors to flatten together: same device and dtype, about cap_bytes each."""
    groups = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.device, t.dtype), []).append(i)
    buckets = []
    for indices in groups.values():
        current, size = [], 0
        for i in indices:
            nbytes = tensors[i].numel() * tensors[i].element_size()
            if current and size + nbytes > cap_bytes:
                buckets.append(current)
                current, size = [], 0
            current.append(i)
            size += nbytes
        if current:
            buckets.append(current)
    return buckets


def all_reduce_tensors(tensors, group=None, average=False, bucket_cap_mb=DEFAULT_BUCKET_CAP_MB,
                       op_type="Allreduce"):
    """Sum (or average) `tensors` over the process group; returns new tensors, inputs untouched.

    Tensors are packed into flat buckets (torch.cat copies, so the in-place collective only
    ever writes our own buffers); every bucket's all_reduce is started before any is waited on.
    """
    if not tensors:
        return ()
    size = torch.distributed.get_world_size(group)
    plan = _buckets(tensors, max(1.0, float(bucket_cap_mb)) * 1024 * 1024)
    flats, works = [], []
    try:
        for indices in plan:
            flat = torch.cat([tensors[i].detach().reshape(-1) for i in indices])
            works.append(torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM,
                                                      group=group, async_op=True))
            flats.append(flat)
        for work in works:
            work.wait()
    except RuntimeError as e:  # DistBackendError, gloo/NCCL errors are RuntimeErrors
        raise _failed(op_type, e) from e
    out = [None] * len(tensors)
    for indices, flat in zip(plan, flats):
        if average and size > 1:
            flat = flat.div_(size) if flat.is_floating_point() else flat.div_(size, rounding_mode="floor")
        offset = 0
        for i in indices:
            n = tensors[i].numel()
            out[i] = flat[offset:offset + n].view(tensors[i].shape)
            offset += n
    return tuple(out)


def broadcast_tensors(tensors, group=None, root=0, op_type="Broadcast"):
    """Every rank gets rank `root`'s values; returns new tensors (copies), inputs untouched."""
    out = []
    try:
        for t in tensors:
            copy = t.detach().clone()
            torch.distributed.broadcast(copy, src=root, group=group)
            out.append(copy)
    except RuntimeError as e:
        raise _failed(op_type, e) from e
    return tuple(out)


def barrier(group=None, op_type="Barrier"):
    try:
        torch.distributed.barrier(group=group)
    except RuntimeError as e:
        raise _failed(op_type, e) from e


@operator("CreateCommonWorld", grad_inputs=())
def create_common_world(kv_handler=None, *, size=0, rank=-1, timeout_ms=-1, transport="tcp",
                        interface="", status_blob=""):
    """The common world of this process: torch.distributed's default group. Caffe2 built a Gloo
    context here from a key-value store (`kv_handler`); the rendezvous is torchrun's now, so
    `kv_handler` is ignored and `size`/`rank`, when given, must match the process group."""
    _require_initialized("CreateCommonWorld")
    world = CommonWorld(timeout=datetime.timedelta(milliseconds=timeout_ms) if timeout_ms > 0 else None)
    if size > 0 and size != world.size:
        raise CollectiveError("CreateCommonWorld: size=%d but torch.distributed has %d processes "
                              "(WORLD_SIZE); launch as many processes as the net expects"
                              % (size, world.size))
    if rank >= 0 and rank != world.rank:
        raise CollectiveError("CreateCommonWorld: rank=%d but this process is rank %d of the "
                              "torch.distributed group" % (rank, world.rank))
    return world


@operator("CloneCommonWorld", grad_inputs=())
def clone_common_world(existing):
    enforce(isinstance(existing, CommonWorld), "CloneCommonWorld: input 0 must be a common world "
            "made by CreateCommonWorld, got %s" % type(existing).__name__)
    return CommonWorld(existing.group, existing.timeout)


@operator("DestroyCommonWorld", grad_inputs=())
def destroy_common_world(world):
    """Releases nothing: the process group belongs to the process (destroy_process_group)."""
    return world


@operator("Allreduce", grad_inputs=())
def allreduce(*inputs, average=0, bucket_cap_mb=DEFAULT_BUCKET_CAP_MB):
    """Allreduce([comm_world,] X1, ..., Xn) -> X1, ..., Xn summed over all ranks (average=1:
    divided by the world size)."""
    world, tensors = _split_world("Allreduce", inputs)
    _check_tensors("Allreduce", tensors)
    return all_reduce_tensors(list(tensors), world.group, bool(average), bucket_cap_mb)


@operator("Broadcast", grad_inputs=())
def broadcast(*inputs, root=0):
    """Broadcast([comm_world,] X1, ..., Xn) -> X1, ..., Xn holding rank `root`'s values."""
    world, tensors = _split_world("Broadcast", inputs)
    _check_tensors("Broadcast", tensors)
    enforce(0 <= root < world.size, "Broadcast: root=%d is not a rank of this %d-process world"
            % (root, world.size))
    return broadcast_tensors(list(tensors), world.group, root)


@operator("Barrier", grad_inputs=())
def barrier_op(*inputs):
    """Barrier([comm_world]): wait until every rank reaches it."""
    world, _ = _split_world("Barrier", inputs)
    barrier(world.group)
