"""data_parallel_model: Caffe2's multi-device training API on torch.distributed.

Caffe2 code that trained on several GPUs keeps its shape:

    from food101.caffe2 import data_parallel_model, model_helper, brew, optimizer, workspace

    def add_inputs(model):                      # reads this rank's shard (or nothing: fed)
        ...
    def forward(model, loss_scale):             # returns [loss blobs], scaled by loss_scale
        ...
        return [model.Scale(loss, "loss_scaled", scale=loss_scale)]
    def add_optimizer(model):
        return optimizer.build_sgd(model, base_learning_rate=0.1, momentum=0.9)

    model = model_helper.ModelHelper(name="train")
    data_parallel_model.Parallelize_GPU(model, input_builder_fun=add_inputs,
                                        forward_pass_builder_fun=forward,
                                        optimizer_builder_fun=add_optimizer)
    data_parallel_model.RunInitNet(model)
    for _ in range(n):
        data_parallel_model.RunNet(model, 1)

Unlike Caffe2, which drove every GPU of a host from one process (and hosts through a Gloo
rendezvous), this runs ONE PROCESS PER DEVICE, started by torchrun, with the process group
already set up (`food101.train.distributed.init_distributed()`):

    torchrun --nproc_per_node 4 my_trainer.py        # each process: Parallelize_GPU(...)

Each process builds one replica under the name scope `<gpu|cpu>_<device id>` (Caffe2's names:
`gpu_1/conv1_w` on the process of GPU 1), with `loss_scale = 1 / world_size`; the nets gain

    param_init_net:  ... fills ...  CreateCommonWorld -> comm_world
                                    Broadcast(params, computed params, from rank 0)
    net:   forward, ConstantFill loss_grad, AutogradGradient
           Allreduce(comm_world, <param>_grad ...)        sum: the scaled losses make it a mean
           [computed params: Broadcast from rank 0 (broadcast_computed_params) or Allreduce mean]
           optimizer ops

so every rank applies the same update and the params stay identical. `devices` selects this
process's device: devices[LOCAL_RANK] (default: LOCAL_RANK itself); several devices per process
are not supported and say so. Without torch.distributed initialised, Parallelize builds a
single-replica model with no collectives (world size 1).

Checkpoints: save `GetCheckpointParams(model)` on rank 0; to resume, RunInitNet on every rank,
feed the saved blobs on rank 0 (or everywhere) and call `FinalizeAfterCheckpoint(model)`, which
broadcasts them from rank 0, as Caffe2 copied gpu_0's blobs to the other devices.

Caffe2 arguments that tuned its own executor (net_type "dag" threads, use_nccl,
max_concurrent_distributed_ops, optimize_gradient_memory, dynamic_memory_management,
num_threads_per_device, barrier_net_timeout_sec) are accepted and have nothing to tune here;
`rendezvous` is torchrun's job (its num_shards/shard_id, when given, must agree with the group).
"""
import logging
import os
import sys

import torch

from food101.caffe2 import core, scope, workspace
from food101.caffe2.ops.collective import CollectiveError, all_reduce_tensors, barrier, broadcast_tensors
from food101.caffe2.executor import AUTOGRAD_OP
from food101.caffe2.ops.learning_rate import scale_base_lr
from food101.caffe2.proto import caffe2_pb2
from food101.caffe2.utils import ArgsToDict, MakeArgument, as_netdef

log = logging.getLogger(__name__)

COMM_WORLD = "comm_world"           # the CreateCommonWorld blob the helpers add
BN_STATS_MODES = ("average", "broadcast", "local")


def Parallelize_GPU(*args, **kwargs):
    kwargs["cpu_device"] = False
    return Parallelize(*args, **kwargs)


def Parallelize_CPU(*args, **kwargs):
    kwargs["cpu_device"] = True
    return Parallelize(*args, **kwargs)


def _process_group():
    """(rank, world_size) of torch.distributed, or (0, 1) when it is not initialised."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _join_torchrun_job(cpu_device):
    """Under torchrun (WORLD_SIZE > 1 in the environment) with no process group yet, join the
    job, so a Caffe2 script runs unchanged (food101.train does this in init_distributed)."""
    dist = torch.distributed
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1 or not dist.is_available() \
            or dist.is_initialized():
        return
    if not cpu_device:
        local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
        if not torch.cuda.is_available() or local_rank >= torch.cuda.device_count():
            raise RuntimeError("Parallelize_GPU under torchrun: LOCAL_RANK=%d needs CUDA device %d, "
                               "this node has %d; use Parallelize_CPU or fewer processes"
                               % (local_rank, local_rank, torch.cuda.device_count()
                                  if torch.cuda.is_available() else 0))
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="gloo" if cpu_device else "cpu:gloo,cuda:nccl")
    log.info("Parallelize: joined the torchrun job as rank %d of %d", dist.get_rank(),
             dist.get_world_size())


def _local_rank():
    return int(os.environ.get("LOCAL_RANK", "0") or 0), int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)


def _this_process_device(devices, world_size, prefix="gpu"):
    """The one device id this process drives (see the module docstring)."""
    local_rank, local_world = _local_rank()
    if devices is None:
        return local_rank
    devices = list(devices)
    if not devices:
        raise ValueError("Parallelize: devices is empty")
    if len(devices) == 1:
        return devices[0]
    if world_size > 1 and len(devices) == local_world:
        return devices[local_rank]
    script = " ".join([os.path.basename(sys.argv[0]) or "your_script.py"] + sys.argv[1:])
    raise ValueError(
        "Parallelize: devices=%s asks for %d devices in this process, but food101 runs one process "
        "per device (this process is %s). Run the same script, unchanged, as: "
        "torchrun --nproc_per_node %d --standalone %s -- each process joins the job by itself, "
        "builds its replica on devices[LOCAL_RANK] under %s_<device>/ and all-reduces the "
        "gradients, so the replicas train as Caffe2's did in one process; each process holds "
        "its own device's blobs (read %s_<LOCAL_RANK>/... where the script read another device's)"
        % (devices, len(devices), "rank %d of %d, %d on this node" % (
            _process_group()[0], world_size, local_world) if world_size > 1 else
           "alone: not started by torchrun", len(devices), script, prefix, prefix))


def Parallelize(model_helper_obj, input_builder_fun, forward_pass_builder_fun,
                param_update_builder_fun=None, optimizer_builder_fun=None,
                post_sync_builder_fun=None, pre_grad_net_transformer_fun=None,
                net_transformer_fun=None, devices=None, rendezvous=None, net_type="dag",
                broadcast_computed_params=True, optimize_gradient_memory=False,
                dynamic_memory_management=False, blobs_to_keep=None, use_nccl=False,
                max_concurrent_distributed_ops=16, cpu_device=False, ideep=False,
                num_threads_per_device=4, shared_model=False, combine_spatial_bn=False,
                barrier_net_timeout_sec=300, bucket_cap_mb=25.0, computed_params_sync=None):
    """Build this process's replica of a data-parallel model (Caffe2's signature).

    input_builder_fun(model): adds the input ops. forward_pass_builder_fun(model, loss_scale):
    adds the model and returns its list of loss blobs, each scaled by loss_scale
    (= 1 / world size). Then either optimizer_builder_fun(model) (returns the optimizer) or
    param_update_builder_fun(model) (adds update ops by hand, inside the device scopes) - or
    neither, for a forward-only (test) model. post_sync_builder_fun(model): runs after the
    initial parameter broadcast was added (e.g. to keep fp16 copies of params in step).
    pre_grad_net_transformer_fun(model) before the gradients; net_transformer_fun(model,
    num_devices, device_prefix, device_type) at the end.
    food101 extras: bucket_cap_mb (gradient all-reduce bucket size); computed_params_sync
    "broadcast" | "average" | "local" (default: "broadcast" if broadcast_computed_params else
    "local").
    """
    model = model_helper_obj
    if ideep:
        raise NotImplementedError("Parallelize(ideep=True): there is no iDeep device here; use "
                                  "cpu_device=True")
    if shared_model:
        raise NotImplementedError("Parallelize(shared_model=True) shared one set of params "
                                  "between the devices of one process; with one process per "
                                  "device every replica owns its params")
    if combine_spatial_bn:
        raise NotImplementedError(
            "Parallelize(combine_spatial_bn=True) computed batch statistics over all devices "
            "(synchronised BN), which is not supported; each rank normalises with its own batch "
            "statistics. computed_params_sync='average' averages the running statistics")
    if param_update_builder_fun is not None and optimizer_builder_fun is not None:
        raise ValueError("Parallelize: give param_update_builder_fun or optimizer_builder_fun, "
                         "not both")
    if model.params:
        raise ValueError("Parallelize: the model must be empty (it has params %s); build it "
                         "inside forward_pass_builder_fun" % [str(p) for p in model.params[:5]])
    _join_torchrun_job(cpu_device)
    rank, world_size = _process_group()
    if rendezvous is not None:
        shards = int(rendezvous.get("num_shards", 1) or 1)
        if world_size % shards:
            raise ValueError("Parallelize: rendezvous num_shards=%d does not match the %d "
                             "torch.distributed processes" % (shards, world_size))
        log.info("Parallelize: the rendezvous is torchrun's; rendezvous=%r only checked", rendezvous)
    sync_mode = computed_params_sync or ("broadcast" if broadcast_computed_params else "local")
    if sync_mode not in BN_STATS_MODES:
        raise ValueError("computed_params_sync must be one of %s, got %r"
                         % (", ".join(BN_STATS_MODES), sync_mode))
    prefix = "cpu" if cpu_device else "gpu"
    device = _this_process_device(devices, world_size, prefix)
    device_type = caffe2_pb2.CPU if cpu_device else caffe2_pb2.CUDA
    device_option = core.DeviceOption(device_type, device)
    scope_name = "%s_%d" % (prefix, device)
    log.info("Parallelize: rank %d of %d builds its replica on %s (%s/)", rank, world_size,
             "CPU" if cpu_device else "cuda:%d" % device, scope_name)

    model._device_type = device_type
    model._device_prefix = prefix
    model._devices = [device]
    model._rank, model._world_size = rank, world_size
    model._rendezvous = rendezvous
    model._shared_model = False
    model._computed_params_sync = sync_mode
    model._grad_names = []
    model._optimizer = None
    model.net.Proto().type = net_type if net_type != "dag" else model.net.Proto().type
    loss_scale = 1.0 / world_size
    training = param_update_builder_fun is not None or optimizer_builder_fun is not None

    with core.DeviceScope(device_option):
        with core.NameScope(scope_name):
            input_builder_fun(model)
            losses = forward_pass_builder_fun(model, loss_scale)
    if training:
        if not isinstance(losses, (list, tuple)) or not all(
                isinstance(loss, (core.BlobReference, str)) for loss in losses):
            raise TypeError("forward_pass_builder_fun must return a list of loss blobs, got %r"
                            % (losses,))
    model._losses_by_gpu = {device: list(losses or [])}
    _group_blobs(model)
    model._data_parallel_model_init_nets = [model.param_init_net]
    model._data_parallel_model_nets = [model.net]
    if not training:
        log.info("Parallelize: no optimizer or update function: forward-only model")
        return model

    if pre_grad_net_transformer_fun is not None:
        pre_grad_net_transformer_fun(model)
    with core.DeviceScope(device_option):
        loss_grads = {}
        for loss in losses:
            loss_grads[str(loss)] = str(model.ConstantFill(loss, str(loss) + "_grad", value=1.0))
    model.AddGradientOperators(loss_grads)
    grads = [model.param_to_grad[p] for p in model.params if p in model.param_to_grad]
    model._grad_names = [stripBlobName(g) for g in grads]
    model._device_grouped_blobs.update(
        {stripBlobName(g): {device: g} for g in grads})
    if world_size > 1:
        add_common_world(model.param_init_net)
        with core.DeviceScope(device_option):
            _extend(model.net, [gradient_allreduce_op(
                [str(g) for g in grads], average=False, bucket_cap_mb=bucket_cap_mb)])
            add_computed_param_sync(model.net, [str(p) for p in model.GetComputedParams("")],
                                    sync_mode)
    if param_update_builder_fun is not None:
        with core.DeviceScope(device_option), core.NameScope(scope_name):
            param_update_builder_fun(model)
    else:  # as in Caffe2: once, outside the scopes (the optimizer finds each param's device)
        model._optimizer = optimizer_builder_fun(model)
    if world_size > 1:  # every rank starts from rank 0's state (after every fill of the init net)
        add_param_broadcast(model.param_init_net, _init_blobs(model))
    if post_sync_builder_fun is not None:
        with core.DeviceScope(device_option), core.NameScope(scope_name):
            post_sync_builder_fun(model)
    if net_transformer_fun is not None:
        net_transformer_fun(model, 1, prefix, device_type)
    return model


def _group_blobs(model):
    device = model._devices[0]
    model._device_grouped_blobs = {stripBlobName(p): {device: p} for p in model.params}
    computed = {stripBlobName(p): {device: p} for p in model.GetComputedParams("")}
    model._device_grouped_blobs.update(computed)
    model._param_names = [stripBlobName(p) for p in model.params]
    model._computed_param_names = list(computed)


def stripBlobName(param):
    """'gpu_0/conv1_w' -> 'conv1_w' (the device scope removed)."""
    if isinstance(param, core.GradientSlice):
        return stripBlobName(param.indices) + stripBlobName(param.values)
    name = str(param)
    return name[name.index(scope._NAMESCOPE_SEPARATOR) + 1:] if scope._NAMESCOPE_SEPARATOR in name else name


def RunInitNet(model):
    """Run the init net(s) (params, then the broadcast from rank 0) and create the net(s)."""
    for init_net in model._data_parallel_model_init_nets:
        workspace.RunNetOnce(init_net)
    CreateNet(model)


def CreateNet(model, overwrite=False):
    for net in model._data_parallel_model_nets:
        netdef = net.Proto()
        produced = {o for op in netdef.op for o in op.output}
        fed = [b for b in netdef.external_input if b not in produced and not workspace.HasBlob(b)]
        workspace.CreateNet(net, overwrite=overwrite, input_blobs=fed)


def RunNet(model, num_iterations):
    for net in model._data_parallel_model_nets:
        workspace.RunNet(net.Proto().name, num_iterations)


def GetDevices(model):
    return list(model._devices)


def GetLearningRateBlobNames(model):
    """The LearningRate op outputs of this replica."""
    return [op.output[0] for op in model.net.Proto().op if op.type == "LearningRate"]


def _init_blobs(model):
    """Tensors the init net creates (params, computed params, optimizer state, counters)."""
    names = []
    for op in model.param_init_net.Proto().op:
        if op.type not in ("CreateCommonWorld", "CreateMutex", "Broadcast"):
            names += [o for o in op.output if o not in names]
    return names


def GetCheckpointParams(model):
    """The blobs a checkpoint must hold: everything the init net creates on this replica
    (params, computed params, optimizer state) and the iteration counter(s)."""
    names = _init_blobs(model)
    for op in model.net.Proto().op:
        if op.type in ("Iter", "AtomicIter") and op.output[0] not in names:
            names.append(op.output[0])
    return names


def FinalizeAfterCheckpoint(model, blobs=None, cpu_device=False):
    """After loading a checkpoint (on rank 0 at least): every rank takes rank 0's values of
    `blobs` (default GetCheckpointParams). Blobs are matched by their name without the device
    scope, so `gpu_0/w` on rank 0 reaches `gpu_1/w` on rank 1."""
    if getattr(model, "_world_size", 1) <= 1:
        return
    names = sorted((str(b) for b in (blobs if blobs is not None else GetCheckpointParams(model))),
                   key=stripBlobName)
    names = [n for n in names if isinstance(workspace.FetchTensor(n), torch.Tensor)]
    values = broadcast_tensors([workspace.FetchTensor(n) for n in names], root=0,
                               op_type="FinalizeAfterCheckpoint")
    for name, value in zip(names, values):
        workspace.FeedTensor(name, value)


def Synchronize(model, timeout_sec=None):
    """A barrier over every rank (Caffe2 ran a barrier net); the group's timeout applies."""
    if getattr(model, "_world_size", 1) > 1:
        barrier(op_type="Synchronize")


def AllreduceBlobs(names, average=False, bucket_cap_mb=25.0):
    """All-reduce workspace blobs outside of any net (e.g. to average metrics)."""
    rank, world = _process_group()
    if world <= 1:
        return
    values = all_reduce_tensors([workspace.FetchTensor(n) for n in names], average=average,
                                bucket_cap_mb=bucket_cap_mb)
    for name, value in zip(names, values):
        workspace.FeedTensor(name, value)


def scale_learning_rate_ops(net, factor):
    """Multiply the base_lr of every LearningRate op in `net` by `factor` (in place)."""
    scale_base_lr(as_netdef(net), factor)
    return net


def add_lr_warmup(net, warmup_iters, start_multiplier):
    """Give every LearningRate op in `net` a linear warm-up (in place).

    The op's policy P becomes Caffe2's `composite`: sub-policy 0 is linearWarmup over updates
    1..warmup_iters starting at `start_multiplier`, sub-policy 1 is P with its own arguments on
    the global iteration (a composite P gets the warm-up prepended to its sub-policies).

    Example: step (stepsize 1000, gamma 0.1), base_lr 0.08, warmup_iters 100, start 0.125:
    update 1 -> 0.0107, 100 -> 0.08, 1500 -> 0.008."""
    if warmup_iters <= 0:
        return net
    for op in as_netdef(net).op:
        if op.type != "LearningRate":
            continue
        args = ArgsToDict(op.arg)
        policy = args.pop("policy", "fixed")
        keep = {k: args.pop(k) for k in ("base_lr",) if k in args}
        rest_huge = 2 ** 31 - 1
        if policy == "composite":
            counts = list(args.pop("sub_policy_num_iters", []))
            subs = {}
            for name, value in args.items():
                if name.startswith("sub_policy_"):
                    index, field = name[len("sub_policy_"):].split("_", 1)
                    subs["sub_policy_%d_%s" % (int(index) + 1, field)] = value
                else:
                    keep[name] = value
            counts = [int(warmup_iters)] + counts
        else:
            subs = {"sub_policy_1_policy": policy}
            subs.update({"sub_policy_1_" + k: v for k, v in args.items()})
            counts = [int(warmup_iters), rest_huge]
        subs.update({"sub_policy_0_policy": "linearWarmup",
                     "sub_policy_0_start_multiplier": float(start_multiplier),
                     "sub_policy_0_num_iter": int(warmup_iters)})
        del op.arg[:]
        keep.update(policy="composite", sub_policy_num_iters=counts, **subs)
        op.arg.extend(MakeArgument(k, v) for k, v in keep.items())
    return net


# ------------------------------------------------------------------------------ net surgery
# (core.Nets or NetDefs, changed in place; food101.train.distributed uses them on its nets)
def _cpu():
    return core.DeviceOption(caffe2_pb2.CPU)


def _extend(net, ops, position=None):
    """Add ops to a core.Net (keeping its blob lookup tables right) or a NetDef."""
    netdef = as_netdef(net)
    if position is None:
        netdef.op.extend(ops)
    else:
        all_ops = list(netdef.op)
        all_ops[position:position] = ops
        del netdef.op[:]
        netdef.op.extend(all_ops)
    if hasattr(net, "_InvalidateLookupTables"):
        net._InvalidateLookupTables()


def _world_and(comm_world, blobs):
    """Op inputs: the common world (when one is named) then the blobs."""
    return ([comm_world] if comm_world else []) + list(blobs)


def add_common_world(init_net, comm_world=COMM_WORLD):
    """Append CreateCommonWorld (the default process group) to an init net, once."""
    if not any(comm_world in op.output for op in as_netdef(init_net).op):
        _extend(init_net, [core.CreateOperator("CreateCommonWorld", [], [comm_world],
                                                device_option=_cpu())])
    return comm_world


def add_param_broadcast(init_net, blobs, comm_world=COMM_WORLD, root=0):
    """Append to an init net: every rank starts from rank `root`'s values of `blobs`.
    comm_world None: the op uses the default process group (no CreateCommonWorld blob)."""
    blobs = [str(b) for b in blobs]
    if blobs:
        if comm_world:
            add_common_world(init_net, comm_world)
        _extend(init_net, [core.CreateOperator("Broadcast", _world_and(comm_world, blobs), blobs,
                                               root=root)])
    return init_net


def gradient_allreduce_op(grads, comm_world=COMM_WORLD, average=True, bucket_cap_mb=25.0):
    """The Allreduce OperatorDef over `grads` (reverse order: the last layers' gradients, first
    ready in a backward pass, go first, as Caffe2 ordered them)."""
    grads = [str(g) for g in reversed(list(grads))]
    return core.CreateOperator("Allreduce", _world_and(comm_world, grads), grads,
                               average=int(bool(average)), bucket_cap_mb=float(bucket_cap_mb))


def insert_gradient_allreduce(net, grads, position=None, **kwargs):
    """Insert the gradient Allreduce into `netdef` (in place): after its AutogradGradient op, or
    at `position` (0 for an update net split off after it). Returns the op's index."""
    netdef = as_netdef(net)
    if position is None:
        position = next((i + 1 for i, op in enumerate(netdef.op) if op.type == AUTOGRAD_OP), None)
        if position is None:
            raise ValueError("net %r has no AutogradGradient op: call AddGradientOperators "
                             "before adding the gradient all-reduce" % netdef.name)
    _extend(net, [gradient_allreduce_op(grads, **kwargs)], position)
    return position


def add_computed_param_sync(net, blobs, mode, comm_world=COMM_WORLD):
    """Append the per-update sync of computed params (BN running statistics) for `mode`."""
    if mode not in BN_STATS_MODES:
        raise ValueError("bn_stats must be one of %s, got %r" % (", ".join(BN_STATS_MODES), mode))
    blobs = [str(b) for b in blobs]
    if not blobs or mode == "local":
        return net
    if mode == "average":
        op = core.CreateOperator("Allreduce", _world_and(comm_world, blobs), blobs, average=1)
    else:
        op = core.CreateOperator("Broadcast", _world_and(comm_world, blobs), blobs, root=0)
    _extend(net, [op])
    return net


def trained_bn_statistics(net):
    """Running mean/var blobs of the SpatialBN ops of `net` that run in training mode."""
    stats = []
    for op in as_netdef(net).op:
        if op.type == "SpatialBN" and len(op.input) >= 5:
            args = ArgsToDict(op.arg)
            if not args.get("is_test", 0):
                stats += [b for b in op.input[3:5] if b not in stats]
    return stats




__all__ = ["Parallelize", "Parallelize_GPU", "Parallelize_CPU", "RunInitNet", "CreateNet", "RunNet",
           "GetDevices", "GetLearningRateBlobNames", "GetCheckpointParams",
           "FinalizeAfterCheckpoint", "Synchronize", "AllreduceBlobs", "stripBlobName",
           "CollectiveError", "COMM_WORLD", "add_common_world", "add_param_broadcast",
           "gradient_allreduce_op", "insert_gradient_allreduce", "add_computed_param_sync",
           "trained_bn_statistics", "scale_learning_rate_ops", "add_lr_warmup"]
