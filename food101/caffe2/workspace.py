"""Caffe2's workspace API: named blobs (torch tensors on their device) and prepared nets.

A workspace is a dict of blobs plus the nets created in it. The module-level functions act on
the current workspace, as `caffe2.python.workspace` does:

    workspace.FeedBlob("data", array)           # numpy or torch; copied in
    workspace.RunNetOnce(model.param_init_net)
    workspace.CreateNet(model.net)              # parse + check once
    for _ in range(n):
        workspace.RunNet(model.net)             # no per-iteration parsing
    workspace.FetchBlob("loss")                 # numpy out
"""
import os
import threading

import numpy as np
import torch

from food101.caffe2 import _import_c_extension as C
from food101.caffe2.errors import Caffe2Error, MissingBlobError, closest
from food101.caffe2.compiled import CompiledNet, CompileOptions, is_compiled_type
from food101.caffe2.executor import PreparedNet, resolve_device
from food101.caffe2.core import GlobalInit as core_global_init
from food101.caffe2.utils import as_netdef

DEFAULT_SEED = 2147483647 // 7  # any fixed value: runs are reproducible unless a seed is given


class Workspace:
    def __init__(self, name):
        self.name = name
        self.root_folder = "."   # where Save/Load/Checkpoint put relative db paths
        self.blobs = {}
        self.nets = {}
        self._generators = {}
        self._seed = DEFAULT_SEED

    def generator(self, device):
        """The RNG random ops on `device` draw from (one per device, seeded reproducibly)."""
        key = str(device)
        gen = self._generators.get(key)
        if gen is None:
            gen = torch.Generator(device=device)
            gen.manual_seed(self._seed)
            self._generators[key] = gen
        return gen

    def seed(self, seed):
        """Re-seed every RNG of this workspace (DeviceOption.random_seed in Caffe2)."""
        self._seed = seed
        self._generators.clear()

    def rng_state(self):
        return {key: gen.get_state() for key, gen in self._generators.items()}

    def set_rng_state(self, state):
        for key, value in state.items():
            self.generator(torch.device(key)).set_state(value)

    def close_blobs(self):
        # Caffe2 destroys blobs on reset, closing DB readers; LMDB allows one open environment
        # per path in a process, so a reader left to the garbage collector blocks the next open
        for value in self.blobs.values():
            close = getattr(value, "close", None)
            if callable(close) and not isinstance(value, torch.Tensor):
                close()

    def reset(self):
        self.close_blobs()
        self.blobs.clear()
        self.nets.clear()
        self._generators.clear()
        self._seed = DEFAULT_SEED


_workspaces = {"default": Workspace("default")}
_current = _workspaces["default"]


def current():
    """The current Workspace object (for library code that needs more than blobs)."""
    return _current


def CurrentWorkspace():
    return _current.name


def Workspaces():
    return sorted(_workspaces)


def SwitchWorkspace(name, create_if_missing=False):
    global _current
    if name not in _workspaces:
        if not create_if_missing:
            raise Caffe2Error("workspace %r does not exist (existing: %s); pass create_if_missing=True"
                              % (name, ", ".join(sorted(_workspaces))))
        _workspaces[name] = Workspace(name)
    _current = _workspaces[name]


def ResetWorkspace(root_folder=None):
    """Drop the current workspace's blobs and nets; `root_folder` (created if missing) becomes
    where relative db paths resolve, else the root folder is kept."""
    _current.reset()
    if root_folder is not None:
        os.makedirs(str(root_folder), exist_ok=True)
        _current.root_folder = str(root_folder)
    return True


def ResetAll():
    """Drop every workspace but a fresh default one (test isolation)."""
    global _current
    for workspace in _workspaces.values():
        workspace.close_blobs()
    _workspaces.clear()
    _workspaces["default"] = _current = Workspace("default")


def seed(value):
    _current.seed(int(value))


def _to_tensor(name, value, device):
    if isinstance(value, (bytes, str)):  # a std::string blob (e.g. a serialized MetaNetDef)
        return value.encode("utf-8") if isinstance(value, str) else value
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        return tensor.to(device) if device is not None else tensor
    array = np.asarray(value)
    if array.dtype.kind in "OSU":  # Caffe2 keeps std::string tensors: FetchBlob gives bytes
        flat = [v.encode("utf-8") if isinstance(v, str) else v for v in array.reshape(-1).tolist()]
        strings = np.empty(len(flat), dtype=object)
        strings[:] = flat
        return strings.reshape(array.shape)
    try:
        tensor = torch.from_numpy(np.array(array, copy=True, order="C"))
    except TypeError as e:
        raise Caffe2Error("FeedBlob(%r): cannot store a numpy array of dtype %s (%s)"
                          % (name, array.dtype, e)) from None
    return tensor.to(device) if device is not None else tensor


def FeedBlob(name, arr, device_option=None):
    name = str(name)
    device = None
    if device_option is not None:
        device = resolve_device(device_option, "FeedBlob(%r)" % name)
    _current.blobs[name] = _to_tensor(name, arr, device)
    return True


def FeedTensor(name, tensor):
    """Store a torch tensor as is (no copy): for the project's own fast paths."""
    _current.blobs[str(name)] = tensor


def FetchBlob(name):
    name = str(name)
    try:
        value = _current.blobs[name]
    except KeyError:
        hint = closest(name, _current.blobs)
        raise MissingBlobError("FetchBlob: blob %r does not exist in workspace %r%s" % (
            name, _current.name, "; did you mean " + " or ".join(map(repr, hint)) if hint else "")) from None
    return _fetch_value(value)


def FetchBlobs(names):
    return [FetchBlob(n) for n in names]


def FetchTensor(name):
    """The blob as the torch tensor it is (no copy, stays on its device)."""
    try:
        return _current.blobs[str(name)]
    except KeyError:
        raise MissingBlobError("blob %r does not exist in workspace %r" % (str(name), _current.name)) from None


def HasBlob(name):
    return str(name) in _current.blobs


def Blobs():
    return sorted(_current.blobs)


def RemoveBlob(name):
    _current.blobs.pop(str(name), None)


def CreateNet(net, overwrite=False, input_blobs=None, compile=None):
    """Prepare `net` once for RunNet.

    compile: None (eager, unless NetDef.type is "compiled"), True, or a
    `compiled.CompileOptions` to run the net as torch.compile'd graphs."""
    netdef = as_netdef(net)
    for name in input_blobs or ():
        _current.blobs.setdefault(str(name), torch.empty(0))
    if netdef.name in _current.nets and not overwrite:
        existing = _current.nets[netdef.name].netdef
        if existing.SerializeToString() == netdef.SerializeToString():
            return True
        raise Caffe2Error("CreateNet: a different net named %r already exists in workspace %r; "
                          "pass overwrite=True to replace it" % (netdef.name, _current.name))
    copy = type(netdef)()
    copy.CopyFrom(netdef)  # later edits to the builder's proto don't change the created net
    if compile is None and is_compiled_type(netdef.type):
        compile = True
    if compile:
        options = compile if isinstance(compile, CompileOptions) else CompileOptions()
        _current.nets[netdef.name] = CompiledNet(copy, _current, options)
    else:
        _current.nets[netdef.name] = PreparedNet(copy, _current)
    return True


def _prepared(name_or_net):
    name = name_or_net if isinstance(name_or_net, str) else as_netdef(name_or_net).name
    try:
        return _current.nets[name]
    except KeyError:
        raise Caffe2Error("RunNet: no net named %r was created in workspace %r (created: %s); "
                          "call CreateNet first" % (name, _current.name,
                                                    ", ".join(sorted(_current.nets)) or "none")) from None


def RunNet(name, num_iter=1, allow_fail=False):
    net = _prepared(name)
    for _ in range(num_iter):
        net.run()
    return True


def RunNetOnce(net):
    PreparedNet(as_netdef(net), _current).run()
    return True


def RunOperatorOnce(operator):
    from food101.caffe2.proto import caffe2_pb2
    if isinstance(operator, bytes):  # a serialized OperatorDef, as Caffe2 accepts
        operator = caffe2_pb2.OperatorDef.FromString(operator)
    netdef = caffe2_pb2.NetDef(name="RunOperatorOnce")
    netdef.op.append(operator)
    PreparedNet(netdef, _current).run()
    return True


def RunOperatorsOnce(operators):
    for op in operators:
        RunOperatorOnce(op)
    return True


def Nets():
    return sorted(_current.nets)


def GlobalInit(args=None):
    """Caffe2 parsed glog/gflags here; the project records the flags (core.GetGlobalInitArgs)."""
    from_core = core_global_init(args or [])
    return from_core


def NumCudaDevices():
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


NumGpuDevices = NumCudaDevices
has_gpu_support = has_cuda_support = torch.cuda.is_available()
has_hip_support = False  # torch builds for ROCm report themselves as CUDA
GpuDeviceType = 1  # caffe2_pb2.CUDA


# -- the rest of Caffe2's workspace surface ---------------------------------------------------
class _BlobDict:
    """`workspace.blobs`: the current workspace's blobs as a dict (numpy out, FeedBlob in)."""

    def __getitem__(self, name):
        return FetchBlob(name)

    def __setitem__(self, name, value):
        FeedBlob(name, value)

    def __delitem__(self, name):
        if not HasBlob(name):
            raise KeyError(name)
        RemoveBlob(name)

    def __contains__(self, name):
        return HasBlob(name)

    def __iter__(self):
        return iter(Blobs())

    def __len__(self):
        return len(_current.blobs)

    def keys(self):
        return Blobs()

    def items(self):
        return [(name, FetchBlob(name)) for name in Blobs()]

    def fetch(self, name):
        return FetchBlob(name)


blobs = _BlobDict()


def _fetch_value(value):
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.dtype in (torch.bfloat16,):
            value = value.float()
        return value.cpu().numpy()
    return value


C.bind(current, Workspace, _to_tensor, _fetch_value)


def CreateBlob(name):
    _current.blobs.setdefault(str(name), torch.empty(0))
    return True


def FetchTorch(name):
    """The blob as a torch tensor (Caffe2 returned a torch view of the blob)."""
    return FetchTensor(name)


def GetBlobSizeBytes(name):
    value = FetchTensor(name)
    return value.numel() * value.element_size() if isinstance(value, torch.Tensor) else 0


def StringifyBlobName(name):
    return '"%s"' % name


def StringifyNetName(name):
    return '"%s"' % name


def GetNetName(net):
    return as_netdef(net).name


def StringifyProto(obj):
    """A proto (or an object with Proto()) serialized to bytes; strings pass through."""
    from google.protobuf.message import Message
    if isinstance(obj, (str, bytes)):
        return obj
    if isinstance(obj, Message):
        return obj.SerializeToString()
    if hasattr(obj, "Proto"):
        return obj.Proto().SerializeToString()
    raise ValueError("Unexpected argument to StringifyProto of type " + type(obj).__name__)


def RootFolder():
    """Where the current workspace resolves relative db paths ("." unless ResetWorkspace set it)."""
    return _current.root_folder


def _as_plandef(plan_or_step):
    from food101.caffe2 import core
    from food101.caffe2.proto import caffe2_pb2
    if isinstance(plan_or_step, core.ExecutionStep):
        plan_or_step = core.Plan(plan_or_step)
    if isinstance(plan_or_step, bytes):
        return caffe2_pb2.PlanDef.FromString(plan_or_step)
    return plan_or_step.Proto() if hasattr(plan_or_step, "Proto") else plan_or_step


def RunPlan(plan_or_step):
    """Run a Plan, an ExecutionStep, a PlanDef or a serialized PlanDef (plan_executor.py)."""
    from food101.caffe2.plan_executor import run_plan
    return run_plan(_as_plandef(plan_or_step), _current)


class BackgroundPlan:
    """A plan running on a thread: is_done(), then is_succeeded() (which re-raises its error,
    as Caffe2's does)."""

    def __init__(self, plan, store):
        from food101.caffe2.plan_executor import run_plan
        self._error = None

        def target():
            try:
                run_plan(plan, store)
            except BaseException as e:  # noqa: BLE001 - handed to is_succeeded()
                self._error = e
        self._thread = threading.Thread(target=target, name="plan " + plan.name, daemon=True)
        self._thread.start()

    def is_done(self):
        return not self._thread.is_alive()

    def is_succeeded(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return True


def RunPlanInBackground(plan_or_step):
    return BackgroundPlan(_as_plandef(plan_or_step), _current)


def GetCuDNNVersion():
    """cuDNN's version as an int (e.g. 8902); 0 without a GPU, as real Caffe2's CPU build says."""
    if not torch.cuda.is_available():
        return 0
    return torch.backends.cudnn.version() or 0


def GetGpuPeerAccessPattern():
    n = NumCudaDevices()
    return np.array([[i == j or torch.cuda.can_device_access_peer(i, j) for j in range(n)]
                     for i in range(n)], dtype=bool)


def GetDeviceProperties(device_id):
    props = torch.cuda.get_device_properties(device_id)
    return {"name": props.name, "total_memory": props.total_memory,
            "major": props.major, "minor": props.minor}


def BenchmarkNet(name, warmup_runs, main_runs, run_individual):
    """Milliseconds per run of a created net (Caffe2 returns [total, per-op...]; the project
    times the whole net only)."""
    import time
    net = _prepared(name)
    for _ in range(warmup_runs):
        net.run()
    start = time.perf_counter()
    for _ in range(max(main_runs, 1)):
        net.run()
    return [1000.0 * (time.perf_counter() - start) / max(main_runs, 1)]


def InferShapesAndTypes(nets, blob_dimensions=None, nets_proto=False, blob_types=None):
    """({blob: shape}, {blob: TensorProto data type}) for the blobs the nets write.

    Inferred by running the nets on a scratch copy of the current workspace (with
    `blob_dimensions` / `blob_types` filling blobs that do not exist as zeros), so every op the
    project runs is inferable; the current workspace is left untouched. Nets that cannot run
    from what is there raise RuntimeError, as Caffe2 does for shapes it cannot infer."""
    from food101.caffe2.proto import caffe2_pb2
    scratch = Workspace("shape_inference")
    scratch.blobs.update(_current.blobs)
    types = {caffe2_pb2.TensorProto.FLOAT: torch.float32, caffe2_pb2.TensorProto.INT32: torch.int32,
             caffe2_pb2.TensorProto.INT64: torch.int64, caffe2_pb2.TensorProto.DOUBLE: torch.float64,
             caffe2_pb2.TensorProto.BOOL: torch.bool, caffe2_pb2.TensorProto.UINT8: torch.uint8}
    for name, dims in (blob_dimensions or {}).items():
        if name not in scratch.blobs:
            dtype = types.get((blob_types or {}).get(name, caffe2_pb2.TensorProto.FLOAT), torch.float32)
            scratch.blobs[name] = torch.zeros(list(dims), dtype=dtype)
    shapes, dtypes = {}, {}
    for net in nets:
        netdef = as_netdef(net)
        try:
            PreparedNet(netdef, scratch).run()
        except Exception as e:
            raise RuntimeError("InferShapesAndTypes: net %r: %s" % (netdef.name, e)) from None
        for op in netdef.op:
            for name in op.output:
                value = scratch.blobs.get(name)
                if isinstance(value, torch.Tensor):
                    shapes[name] = list(value.shape)
                    dtypes[name] = _TORCH_TO_PROTO.get(value.dtype, caffe2_pb2.TensorProto.UNDEFINED)
    return shapes, dtypes


def _proto_types():
    from food101.caffe2.proto import caffe2_pb2
    t = caffe2_pb2.TensorProto
    return {torch.float32: t.FLOAT, torch.float64: t.DOUBLE, torch.int32: t.INT32,
            torch.int64: t.INT64, torch.bool: t.BOOL, torch.uint8: t.UINT8, torch.float16: t.FLOAT16,
            torch.int8: t.INT8, torch.int16: t.INT16}


_TORCH_TO_PROTO = _proto_types()


class Predictor:
    """Caffe2's workspace.Predictor(init_net, predict_net): runs init_net once in a private
    workspace; run(inputs) feeds the predict net's external inputs that the init net did not
    fill (a list in order, or a dict) and returns the external outputs as numpy arrays."""

    def __init__(self, init_net, predict_net):
        from food101.caffe2.proto import caffe2_pb2
        self._init = _parse_net(init_net, caffe2_pb2)
        self._predict = _parse_net(predict_net, caffe2_pb2)
        self._store = Workspace("predictor")
        PreparedNet(self._init, self._store).run()
        self._inputs = [b for b in self._predict.external_input if b not in self._store.blobs]
        self._net = None

    def run(self, inputs):
        if isinstance(inputs, dict):
            feeds = inputs
        else:
            # as Caffe2's Predictor: the i-th array feeds external_input[i], whether or not the
            # init net filled it (mobile_exporter puts the inputs first, with placeholders)
            inputs = list(inputs)
            names = list(self._predict.external_input)
            if len(inputs) > len(names):
                raise Caffe2Error("Predictor.run: the predict net %r has %d external input(s) %s, "
                                  "got %d arrays" % (self._predict.name, len(names), names[:5], len(inputs)))
            feeds = dict(zip(names, inputs))
        for name, value in feeds.items():
            self._store.blobs[str(name)] = _to_tensor(name, value, None)
        if self._net is None:
            self._net = PreparedNet(self._predict, self._store)
        self._net.run()
        return [_fetch_value(self._store.blobs[name]) for name in self._predict.external_output]


def _parse_net(net, caffe2_pb2):
    if isinstance(net, bytes):
        proto = caffe2_pb2.NetDef()
        proto.ParseFromString(net)
        return proto
    return as_netdef(net)


def GetOperatorCost(operator, blobs):
    """(flops, bytes written) of an OperatorDef (or its serialization) on the current
    workspace's blobs `blobs` (operator_cost.py)."""
    from food101.caffe2.operator_cost import operator_cost
    from food101.caffe2.proto import caffe2_pb2
    if isinstance(operator, bytes):
        operator = caffe2_pb2.OperatorDef.FromString(operator)
    return operator_cost(operator, blobs, _current)


def ApplyTransform(transform_key, net):
    """The NetDef `net` transformed by the registered transform `transform_key` (transforms.py)."""
    from food101.caffe2.transforms import apply_transform
    return apply_transform(str(transform_key), as_netdef(net))


def ApplyTransformIfFaster(transform_key, net, init_net, warmup_runs=5, main_runs=10,
                           improvement_threshold=1.01):
    """The transformed net if it runs `improvement_threshold` times faster than `net` on the
    current workspace (after `init_net` ran there), else `net` itself."""
    import time
    netdef = as_netdef(net)
    candidate = ApplyTransform(transform_key, netdef)

    def seconds_per_run(proto):
        RunNetOnce(init_net)
        prepared = PreparedNet(proto, _current)
        for _ in range(warmup_runs):
            prepared.run()
        start = time.perf_counter()
        for _ in range(max(main_runs, 1)):
            prepared.run()
        return (time.perf_counter() - start) / max(main_runs, 1)

    before, after = seconds_per_run(netdef), seconds_per_run(candidate)
    return candidate if before > after * improvement_threshold else netdef


# -- immediate mode: every op a core.Net creates also runs at once, in a workspace of its own --
_immediate_mode = False
_immediate_workspace_name = "_CAFFE2_IMMEDIATE"
_immediate_root_folder = ""


def IsImmediate():
    return _immediate_mode


def StartImmediate(i_know=False):
    """Run every op as core.Net creates it, in a private workspace with a temporary root
    folder (Caffe2's debugging mode; it prints a warning unless `i_know`)."""
    import tempfile
    global _immediate_mode, _immediate_root_folder
    if IsImmediate():
        StopImmediate()
    _immediate_mode = True
    _immediate_root_folder = tempfile.mkdtemp()
    workspace = Workspace(_immediate_workspace_name)
    workspace.root_folder = _immediate_root_folder
    _workspaces[_immediate_workspace_name] = workspace
    if not i_know:
        print("Enabling immediate mode: every operator a net creates also runs now, in its "
              "own workspace (slow; for debugging).")


def StopImmediate():
    """Leave immediate mode: its workspace and root folder are deleted."""
    import shutil
    global _immediate_mode, _immediate_root_folder
    if not IsImmediate():
        return
    workspace = _workspaces.pop(_immediate_workspace_name)
    workspace.close_blobs()
    shutil.rmtree(_immediate_root_folder, ignore_errors=True)
    _immediate_root_folder = ""
    _immediate_mode = False


def _immediate():
    if not IsImmediate():
        raise Caffe2Error("immediate mode is off: call workspace.StartImmediate() first")
    return _workspaces[_immediate_workspace_name]


def ImmediateBlobs():
    return sorted(_immediate().blobs)


def RunOperatorImmediate(op):
    from food101.caffe2.proto import caffe2_pb2
    netdef = caffe2_pb2.NetDef(name="RunOperatorImmediate")
    netdef.op.append(op)
    PreparedNet(netdef, _immediate()).run()
    return True


def FetchImmediate(*args, **kwargs):
    return _with_workspace(_immediate(), FetchBlob, *args, **kwargs)


def FeedImmediate(*args, **kwargs):
    return _with_workspace(_immediate(), FeedBlob, *args, **kwargs)


def _with_workspace(workspace, fn, *args, **kwargs):
    global _current
    previous, _current = _current, workspace
    try:
        return fn(*args, **kwargs)
    finally:
        _current = previous
