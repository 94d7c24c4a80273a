"""Data-parallel training on torch.distributed: one process per device, launched by torchrun.

    torchrun --nproc_per_node 4 tools/train.py --gpu --distributed --config cfg.yaml
    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 --rdzv_backend c10d \\
             --rdzv_endpoint host0:29500 tools/train.py --gpu --distributed ...   (on each node)

Every process runs the same nets on its own device and its own shard of the LMDB; the nets
differ from a single-process run only by a few collective ops (ops/collective.py):

    rank 0 (cuda:0)                                      rank 1 (cuda:1)
    LMDB records perm[0::W]                              LMDB records perm[1::W]
    init net ── Broadcast(params, from rank 0)           init net ── Broadcast(params)
    fwd_bwd ─► <param>_grad (local batch mean)           fwd_bwd ─► <param>_grad
    update:  Allreduce(grads, average) ◄──── NCCL (GPU) / Gloo (CPU) ────► Allreduce(grads)
             [BN running stats: average | broadcast | local]
             weight decay, LearningRate (scaled, warm-up), MomentumSGDUpdate   (same on all)
    log, metrics.jsonl, evaluation, plots, checkpoints, export: rank 0 only

Gradients. Each rank's loss is the mean over its local batch (AveragedLoss); the gradient
Allreduce averages over ranks, so with equal local batches the update equals a single-process
step on the concatenated batch. Gradients are packed into buckets (~`bucket_cap_mb` MB) whose
all-reduces run asynchronously, overlapping one another. They do not overlap with backward: the
runtime computes every gradient in one `torch.autograd.grad` call, so the reduction starts when
backward has finished (DDP's per-bucket hooks have no equivalent yet).

Learning-rate scaling (Goyal et al., "Accurate, Large Minibatch SGD", 2017), `lr_scaling`:

    "linear":  lr = base_lr * global_batch / reference_batch
               global_batch = world_size * data.batch_size * solver.iter_size
               reference_batch = distributed.reference_batch, or (0) one rank's batch, so that
               by default lr = base_lr * world_size: solver.base_lr stays the single-GPU rate.
    "none":    lr = base_lr.
    Warm-up: for the first `warmup_iters` updates the rate rises linearly from
    `warmup_start_multiplier` x lr (default 1 / scale: the unscaled base_lr) to lr, done by
    turning each LearningRate op into Caffe2's `composite` policy [linearWarmup, <policy>];
    afterwards the configured policy runs on the global iteration, unchanged.

    Example: base_lr 0.01, 8 GPUs x batch 32, linear, warmup_iters 100: the rate starts at 0.01,
    reaches 0.08 at update 100, then follows lr_policy from 0.08.

BatchNorm running statistics (`bn_stats`; SpatialBN layers that train): "average" all-reduces
them (mean) after every update, "broadcast" copies rank 0's to every rank after every update
(Caffe2's data_parallel_model broadcast_computed_params), "local" leaves each rank its own
(rank 0's are the ones checkpointed). Batch statistics themselves stay per rank (no SyncBN).

Outputs and control. Only rank 0 writes the config, log, metrics.jsonl, checkpoints, plots and
the export, and only it evaluates (the others wait at the next all-reduce, so `timeout_s` must
cover an evaluation). A Ctrl-C seen by any rank is shared by a one-integer all-reduce per update,
so every rank stops after the same iteration and rank 0 writes the checkpoint. Random streams
(dropout, augmentation) are re-derived per rank and update from (seed, rank, iteration), so a
resumed run repeats the uninterrupted one bit for bit. With one process nothing changes.

The Caffe2-API entry (`food101.caffe2.data_parallel_model.Parallelize`) builds the same kind
of nets for code written against Caffe2; this module adds the process group and the trainer.

Failures. A rank that exits or crashes makes the collective of every other rank fail: Gloo
notices the closed connection at once, NCCL within `timeout_s` (the process group timeout, which
must exceed the longest rank-0-only phase: an evaluation, a checkpoint). torchrun then stops the
job and names the failed rank; the surviving ranks raise `CollectiveError` saying to resume.
Resuming needs the snapshot folder visible to every rank (a shared file system): each rank reads
the checkpoint, takes its own shard's reader position and re-derives its RNG streams.
"""
import dataclasses
import datetime
import os

import numpy as np
import torch

from food101.caffe2.data_parallel_model import (add_computed_param_sync, add_lr_warmup,
                                          add_param_broadcast, insert_gradient_allreduce,
                                          scale_learning_rate_ops, trained_bn_statistics)
from food101.caffe2.ops.collective import CollectiveError, all_reduce_tensors, broadcast_tensors

DEFAULT_TIMEOUT_S = 600.0
LR_SCALING_RULES = ("linear", "none")
ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(RuntimeError):
    """The process group cannot be set up (not under torchrun, no GPU for a rank, ...)."""


# ------------------------------------------------------------------------------ the process
@dataclasses.dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the job. world_size 1 = a plain single-process run."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str = ""
    device: torch.device = torch.device("cpu")
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_rank0(self):
        return self.rank == 0

    @property
    def enabled(self):
        """True when there are other ranks to synchronise with."""
        return self.world_size > 1

    def __str__(self):
        return "rank %d of %d (local rank %d, %s, %s)" % (
            self.rank, self.world_size, self.local_rank, self.device, self.backend or "no backend")


SINGLE = DistributedContext()
_context = SINGLE


def _env_int(name, default=None):
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise DistributedError(
                "environment variable %s is not set: --distributed runs one process per device "
                "started by torchrun, e.g. `torchrun --nproc_per_node 2 tools/train.py "
                "--distributed ...` (torchrun sets %s)" % (name, ", ".join(ENV_VARS)))
        return default
    try:
        return int(value)
    except ValueError:
        raise DistributedError("environment variable %s=%r is not an integer" % (name, value)) from None


def init_distributed(backend=None, device_type="cpu", timeout_s=DEFAULT_TIMEOUT_S):
    """Join the job torchrun started; returns the DistributedContext (also `current()`).

    Reads RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT.
    device_type "cuda": this rank drives cuda:LOCAL_RANK; the backend defaults to
    "cpu:gloo,cuda:nccl" (NCCL for gradients, Gloo for CPU blobs such as the iteration counter).
    device_type "cpu": Gloo. timeout_s bounds how long a collective waits for a silent peer.
    Calling it again (or after torch.distributed was initialised elsewhere) returns the context
    of the existing group."""
    global _context
    dist = torch.distributed
    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed support")
    rank, world_size = _env_int("RANK"), _env_int("WORLD_SIZE")
    local_rank = _env_int("LOCAL_RANK", rank)
    local_world_size = _env_int("LOCAL_WORLD_SIZE", world_size)
    if not 0 <= rank < world_size:
        raise DistributedError("RANK=%d is not in [0, WORLD_SIZE=%d)" % (rank, world_size))
    if device_type == "cuda":
        if not torch.cuda.is_available():
            raise DistributedError("rank %d: --gpu --distributed needs CUDA GPUs, but "
                                   "torch.cuda.is_available() is False; use --cpu (Gloo)" % rank)
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(
                "rank %d: LOCAL_RANK=%d but this node has %d CUDA device(s); start at most that "
                "many processes per node (torchrun --nproc_per_node %d)"
                % (rank, local_rank, torch.cuda.device_count(), torch.cuda.device_count()))
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = backend or "cpu:gloo,cuda:nccl"
    elif device_type == "cpu":
        device = torch.device("cpu")
        backend = backend or "gloo"
    else:
        raise DistributedError("device_type must be 'cpu' or 'cuda', got %r" % (device_type,))
    if not dist.is_initialized():
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if not os.environ.get(name):
                raise DistributedError("environment variable %s is not set (torchrun sets it; by "
                                       "hand: MASTER_ADDR=<rank 0 host> MASTER_PORT=<free port>)" % name)
        try:
            dist.init_process_group(backend=backend, init_method="env://", rank=rank,
                                    world_size=world_size,
                                    timeout=datetime.timedelta(seconds=float(timeout_s)))
        except (RuntimeError, ValueError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DistributedError(
                "rank %d of %d could not join the process group at %s:%s with backend %s within "
                "%gs: %s" % (rank, world_size, os.environ.get("MASTER_ADDR"),
                             os.environ.get("MASTER_PORT"), backend, timeout_s, reason)) from None
    else:
        backend = str(dist.get_backend())
        rank, world_size = dist.get_rank(), dist.get_world_size()
    _context = DistributedContext(rank, world_size, local_rank, local_world_size, backend, device,
                                  float(timeout_s))
    return _context


def current():
    """The context of this process: init_distributed's, else a single process."""
    return _context


def is_rank0():
    return _context.rank == 0


def get_rank():
    return _context.rank


def get_world_size():
    return _context.world_size


def barrier():
    if _context.enabled:
        from food101.caffe2.ops.collective import barrier as _barrier
        _barrier()


def shutdown():
    """Leave the process group (end of a run; a no-op when there is none)."""
    global _context
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _context = SINGLE


def join(cfg, error=DistributedError):
    """(cfg, context) for a training run. With `distributed.enabled`: join torchrun's process
    group (a GPU run takes cuda:LOCAL_RANK as solver.device_id) and take rank 0's random seed,
    so every rank shuffles the LMDB the same way and reads its own disjoint shard of it.
    Otherwise (cfg, a single-process context). Failures raise `error` (the caller's class)."""
    from food101.train import config as C
    d = cfg.distributed
    if not d.enabled:
        return cfg, SINGLE
    device_type = "cuda" if cfg.solver.solver_mode == "GPU" else "cpu"
    try:
        ctx = init_distributed(d.backend or None, device_type, d.timeout_s)
        seed = int(broadcast_tensors([torch.tensor([cfg.solver.random_seed], dtype=torch.int64)],
                                     op_type="the seed broadcast")[0][0])
    except (DistributedError, CollectiveError) as e:
        raise error(str(e)) from None
    updates = {"solver.random_seed": seed}
    if device_type == "cuda":
        updates["solver.device_id"] = ctx.local_rank
    return C.merge(cfg, updates, "distributed"), ctx


def any_rank(flag, ctx=None):
    """True on every rank when `flag` is true on any (e.g. a Ctrl-C seen by one rank), so all
    ranks stop after the same iteration."""
    ctx = ctx or current()
    if not ctx.enabled:
        return bool(flag)
    total = all_reduce_tensors([torch.tensor([int(bool(flag))], dtype=torch.int64)],
                               op_type="the stop-flag all-reduce")[0]
    return bool(int(total[0]) > 0)


def describe(ctx, cfg, lr_factor):
    """The log line of a distributed run."""
    d = cfg.distributed
    return ("Data-parallel: %d ranks (%s), %d images per update; lr x %g (%s)%s; BN statistics %s"
            % (ctx.world_size, ctx.backend, ctx.world_size * cfg.data.batch_size * cfg.solver.iter_size,
               lr_factor, d.lr_scaling, ", %d warm-up updates" % d.warmup_iters if d.warmup_iters
               and lr_factor != 1.0 else "", d.bn_stats))


class _NullRecords:
    """metrics.JsonlWriter's stand-in on ranks other than 0: they write no files."""

    def write(self, record):
        pass

    def close(self):
        pass


def silent_outputs():
    """(records, runlog) for ranks other than 0: nothing printed, nothing written."""
    from food101.train.metrics import RunLog
    return _NullRecords(), RunLog(None, total=None, progress=False, stream=open(os.devnull, "w"))


def localize_checkpoint(state, reader, ctx=None, error=ValueError):
    """A checkpoint (written by rank 0) as this rank resumes it: its own shard's reader position."""
    ctx = ctx or current()
    if not ctx.enabled or not state.get("reader"):
        return state
    try:
        return dict(state, reader=reader_state_for_rank(state["reader"], reader))
    except ValueError as e:
        raise error("checkpoint %s: %s" % (state.get("path", "?"), e)) from None


# ------------------------------------------------------------------------------ learning rate
def lr_scale_factor(world_size, batch_size, iter_size=1, reference_batch=0, rule="linear"):
    """The factor the linear scaling rule multiplies base_lr by.

    >>> lr_scale_factor(8, 32)                        # reference = one rank's batch
    8.0
    >>> lr_scale_factor(8, 32, reference_batch=128)   # 256 images per update / 128
    2.0
    """
    if rule not in LR_SCALING_RULES:
        raise ValueError("lr_scaling must be one of %s, got %r" % (", ".join(LR_SCALING_RULES), rule))
    if rule == "none":
        return 1.0
    local = int(batch_size) * int(iter_size)
    reference = int(reference_batch) if reference_batch else local
    if reference <= 0:
        raise ValueError("reference_batch must be > 0 (or 0 = one rank's batch), got %r" % reference_batch)
    return float(world_size) * local / reference


# ------------------------------------------------------------------------------ the trainer's nets
def prepare_training_nets(nets, cfg, ctx=None):
    """Make the trainer's nets (nets.TrainingNets, right after build_training_nets) data-parallel:
    param broadcast in the init net; in the update net the gradient Allreduce first, the scaled
    learning rate with warm-up, and the BN statistics sync last. Returns the lr scale factor.
    A no-op (factor 1) for a single process."""
    ctx = ctx or current()
    if not ctx.enabled:
        return 1.0
    d = cfg.distributed
    factor = lr_scale_factor(ctx.world_size, cfg.data.batch_size, cfg.solver.iter_size,
                             d.reference_batch, d.lr_scaling)
    # the ops use the default process group: no common-world blob joins the checkpointed state
    stats = trained_bn_statistics(nets.fwd_bwd)
    add_param_broadcast(nets.init[0], list(nets.params) + stats, comm_world=None)
    insert_gradient_allreduce(nets.update, ["%s_grad" % p for p in nets.params], position=0,
                              comm_world=None, average=True, bucket_cap_mb=d.bucket_cap_mb)
    if factor != 1.0:
        scale_learning_rate_ops(nets.update, factor)
    start = d.warmup_start_multiplier if d.warmup_start_multiplier >= 0 else 1.0 / factor
    if d.warmup_iters > 0 and start != 1.0:
        add_lr_warmup(nets.update, d.warmup_iters, start)
    add_computed_param_sync(nets.update, stats, d.bn_stats, comm_world=None)
    return factor


# ------------------------------------------------------------------------------ data and RNG
def reader_shard(ctx=None):
    """LMDBReader keyword arguments for this rank's shard: records perm[rank::world_size]."""
    ctx = ctx or current()
    return {"rank": ctx.rank, "world_size": ctx.world_size}


def reader_state_for_rank(state, reader):
    """Rank 0's reader state (from a checkpoint) as `reader`'s own: every rank has consumed the
    same number of records of its own shard; with unequal shards (no shuffle, N % W != 0) the
    epoch and position are re-derived from that count."""
    state = dict(state)
    if state.get("rank", reader.rank) == reader.rank and state.get("world_size") == reader.world_size:
        return state
    if state.get("world_size", reader.world_size) != reader.world_size:
        raise ValueError("the checkpoint was written by a run of %d ranks, this one has %d; resume "
                         "with the same number of processes" % (state["world_size"], reader.world_size))
    saved_shard = state.get("shard_size")
    if saved_shard is None:
        n, w, r = state.get("num_records", reader.num_records), reader.world_size, state.get("rank", 0)
        saved_shard = n // w if reader.shuffle else len(range(r, n, w))
    consumed = int(state["epoch"]) * saved_shard + int(state["position"])
    mine = reader.shard_size()
    state.update(rank=reader.rank, epoch=consumed // mine, position=consumed % mine)
    return state


def decorrelate_rngs(seed, iteration, ctx=None, workspace=None, generators=()):
    """Give this rank its own random streams (dropout masks, augmentation) for the update after
    `iteration`, seeded from (seed, rank, iteration). Called at every update, it makes a resumed
    run draw exactly what the uninterrupted one drew, with no per-rank RNG state in checkpoints;
    every rank starts from the same seed, so the param init agrees. A no-op for a single
    process, so single-process runs are unchanged."""
    ctx = ctx or current()
    if not ctx.enabled:
        return
    state = np.random.SeedSequence([int(seed), ctx.rank, int(iteration)]).generate_state(2)
    if workspace is not None:
        workspace.seed(int(state[0]))
    for k, gen in enumerate(generators):
        gen.manual_seed(int(state[1]) + k)


def failure_message(error, last_checkpoint=None):
    """A TrainingError text for a failed collective: what happened and where to resume from."""
    if last_checkpoint:
        return "%s\nThe last checkpoint is %s: run the same torchrun command with --resume %s" % (
            error, last_checkpoint, last_checkpoint)
    return "%s\nNo checkpoint was written yet: start the job again" % error
