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
import numpy as np
import torch

from food101.caffe2.errors import Caffe2Error, MissingBlobError, closest
from food101.caffe2.compiled import CompiledNet, CompileOptions, is_compiled_type
from food101.caffe2.executor import PreparedNet, resolve_device

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

    def reset(self):
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
    _current.reset()
    if root_folder is not None:
        _current.root_folder = str(root_folder)
    return True


def ResetAll():
    """Drop every workspace but a fresh default one (test isolation)."""
    global _current
    _workspaces.clear()
    _workspaces["default"] = _current = Workspace("default")


def seed(value):
    _current.seed(int(value))


def _as_netdef(net):
    return net.Proto() if hasattr(net, "Proto") else net


def _to_tensor(name, value, device):
    if isinstance(value, (bytes, str)):  # a std::string blob (e.g. a serialized MetaNetDef)
        return value.encode("utf-8") if isinstance(value, str) else value
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        return tensor.to(device) if device is not None else tensor
    array = np.asarray(value)
    if array.dtype.kind in "OSU":  # strings stay numpy objects, as Caffe2 keeps std::string blobs
        return array
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
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.dtype in (torch.bfloat16,):
            value = value.float()
        return value.cpu().numpy()
    return value


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
    netdef = _as_netdef(net)
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
    name = name_or_net if isinstance(name_or_net, str) else _as_netdef(name_or_net).name
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
    PreparedNet(_as_netdef(net), _current).run()
    return True


def RunOperatorOnce(operator):
    from food101.caffe2.proto import caffe2_pb2
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
    """Caffe2 parsed glog/gflags here; nothing to configure on torch."""
    return True


def NumCudaDevices():
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


NumGpuDevices = NumCudaDevices
has_gpu_support = has_cuda_support = torch.cuda.is_available()
GpuDeviceType = 1
