"""The names Python code reaches through `workspace.C` / `core.C` (Caffe2's pybind11 module),
as plain Python objects over the project's workspaces.

    ws = workspace.C.Workspace()              # a fresh, private workspace
    ws.create_blob("x").feed(np.ones(3))
    ws.blobs["x"].fetch()                     # numpy
    ws.create_net(net).run(); ws.run(op)      # NetDef, Net, OperatorDef
    workspace.C.Workspace.current.blobs       # the workspace the module functions act on

What the C++ module offers and the project cannot honour (MKLDNN/IDEEP, cuDNN algorithm
counts, TorchScript modules, raw TensorCPU views) raises an error that says so.
"""
import numpy as np
import torch

from food101.caffe2 import db as _db
from food101.caffe2.errors import Caffe2Error
from food101.caffe2.executor import PreparedNet
from food101.caffe2.ops import registry
from food101.caffe2.proto import caffe2_pb2

use_mkldnn = False
has_mkldnn = False   # real CPU Caffe2 reports False too: no MKLDNN device in the tests
use_ideep = False
use_trt = False
is_asan = False
has_fbgemm = False
define_caffe2_no_operator_schema = False

_binding = {}


def bind(current_workspace, workspace_class, to_tensor, fetch):
    """workspace.py hands over its current-workspace accessor and converters (it owns them)."""
    _binding.update(current=current_workspace, cls=workspace_class, to_tensor=to_tensor,
                    fetch=fetch)


class Blob:
    def __init__(self, store, name):
        self._store, self._name = store, name

    def fetch(self):
        return _binding["fetch"](self._store.blobs[self._name])

    def feed(self, value, device_option=None):
        self._store.blobs[self._name] = _binding["to_tensor"](self._name, value, None)
        return True

    def is_tensor(self):
        return isinstance(self._store.blobs.get(self._name), torch.Tensor)

    def tensor(self):
        """A TensorCPU view (`.data` is a numpy view of the blob, `init`, `feed`, `fetch`)."""
        return TensorCPU(self._store, self._name)

    def serialize(self, name):
        """The blob as one serialized BlobProto named `name` (unchunked)."""
        from food101.caffe2.blob_serialization import NO_CHUNKING, serialize_blob
        (_, record), = serialize_blob(name, self._store.blobs[self._name], NO_CHUNKING)
        return record

    def deserialize(self, serialized):
        """Fill the blob from a serialized BlobProto (what serialize() returns)."""
        from food101.caffe2.blob_serialization import BlobAssembler
        assembler = BlobAssembler("Blob(%r).deserialize" % self._name)
        name = assembler.add(self._name, serialized, name=self._name)
        value, _ = assembler.finish()[name]
        self._store.blobs[self._name] = _binding["to_tensor"](self._name, value, None)
        return True

    def __repr__(self):
        return "<Blob %r>" % self._name


class TensorCPU:
    """Caffe2's in-place view of a CPU tensor blob: `data` shares the blob's memory (a numpy
    view of the torch tensor; string tensors are numpy object arrays, shared as they are)."""

    def __init__(self, store, name):
        self._store, self._name = store, name

    @property
    def data(self):
        value = self._store.blobs[self._name]
        if isinstance(value, torch.Tensor):
            if value.device.type != "cpu":
                raise Caffe2Error("Blob(%r).tensor(): the blob is on %s; TensorCPU views need a "
                                  "CPU tensor" % (self._name, value.device))
            return value.numpy()
        return value

    @property
    def _shape(self):
        return list(self.data.shape)

    def init(self, dims, data_type):
        """Resize to `dims` with `data_type` (new, zeroed storage); STRING is refused, as in
        Caffe2, whose strings cannot be allocated from Python."""
        from food101.caffe2.proto.serialization import numpy_dtype_of
        if data_type == caffe2_pb2.TensorProto.STRING:
            raise Caffe2Error("TensorCPU.init: cannot initialize a string tensor from Python")
        array = np.zeros(list(dims), dtype=numpy_dtype_of(data_type))
        self._store.blobs[self._name] = torch.from_numpy(array)

    def feed(self, value):
        self._store.blobs[self._name] = _binding["to_tensor"](self._name, value, None)
        return True

    def fetch(self):
        return np.array(self.data, copy=True)

class _Net:
    def __init__(self, prepared):
        self._prepared = prepared

    def run(self):
        self._prepared.run()
        return True

    def proto(self):
        return self._prepared.netdef


class _WorkspaceMeta(type):
    @property
    def current(cls):
        return Workspace(_binding["current"]())


class Workspace(metaclass=_WorkspaceMeta):
    """Caffe2's C.Workspace: Workspace() is a new private workspace; Workspace.current wraps
    the current one."""

    def __init__(self, store=None):
        self._store = store if store is not None else _binding["cls"]("private")

    @property
    def blobs(self):
        return {name: Blob(self._store, name) for name in self._store.blobs}

    @property
    def nets(self):
        return {name: _Net(net) for name, net in self._store.nets.items()}

    def create_blob(self, name):
        self._store.blobs.setdefault(str(name), torch.empty(0))
        return Blob(self._store, str(name))

    def fetch_blob(self, name):
        return Blob(self._store, str(name)).fetch()

    def feed_blob(self, name, value, device_option=None):
        return Blob(self._store, str(name)).feed(value)

    def create_net(self, net, overwrite=False):
        """Create a Net / NetDef here; its op outputs exist (empty) afterwards, as in Caffe2."""
        from food101.caffe2.plan_executor import create_net
        netdef = net.Proto() if hasattr(net, "Proto") else net
        if not isinstance(netdef, caffe2_pb2.NetDef):
            raise TypeError("create_net takes a Net or a NetDef, got %s" % type(net).__name__)
        if netdef.name in self._store.nets and not overwrite:
            raise Caffe2Error("create_net: a net named %r already exists; pass overwrite=True"
                              % netdef.name)
        return _Net(create_net(self._store, netdef, overwrite=True))

    def run(self, obj):
        """An OperatorDef, a NetDef / Net (run once, not kept), or a Plan / PlanDef."""
        from food101.caffe2.plan_executor import run_plan
        proto = obj.Proto() if hasattr(obj, "Proto") else obj
        if isinstance(proto, caffe2_pb2.OperatorDef):
            netdef = caffe2_pb2.NetDef(name="run_op")
            netdef.op.append(proto)
            PreparedNet(netdef, self._store).run()
        elif isinstance(proto, caffe2_pb2.NetDef):
            PreparedNet(proto, self._store).run()
        elif isinstance(proto, caffe2_pb2.PlanDef):
            run_plan(proto, self._store)
        else:
            raise TypeError("Workspace.run: cannot run a %s (an OperatorDef, NetDef or PlanDef)"
                            % type(proto).__name__)
        return True

    def _reset(self):
        self._store.reset()


def cudnn_convolution_fwd_algo_count():
    raise Caffe2Error("cuDNN algorithm counts: the project runs convolutions through torch and "
                      "does not expose cuDNN algorithm selection")


cudnn_convolution_bwd_filter_algo_count = cudnn_convolution_bwd_data_algo_count = \
    cudnn_convolution_fwd_algo_count


def num_cuda_devices():
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class Mode:
    """C.Mode: how create_db opens a DB (food101.caffe2.db reads the names)."""
    read, write, new = _db.READ, _db.WRITE, _db.NEW


create_db = _db.create_db   # minidb / lmdb: .new_transaction().put(k, v), .new_cursor(), .close()


class ScriptModule:
    def __init__(self, *args, **kwargs):
        raise Caffe2Error("C.ScriptModule: TorchScript modules inside Caffe2 nets are not "
                          "supported by the project")


__all__ = ["Blob", "Mode", "Workspace", "bind", "create_db", "num_cuda_devices", "np"]


class OpSchema:
    """Caffe2's operator schema lookup: `OpSchema.get(op_type)` is the registered op's schema
    (input counts, argument names and defaults), or None for an unknown type."""

    def __init__(self, schema):
        self.name = schema.type
        self.min_input = schema.min_inputs
        self.max_input = schema.max_inputs if schema.max_inputs is not None else 2 ** 31 - 1
        self.args = sorted(schema.arg_names)
        self.arg_defaults = dict(schema.arg_defaults)
        self.private = False
        self.doc = (schema.fn.__doc__ or "").strip()

    @staticmethod
    def get(op_type):
        try:
            return OpSchema(registry.lookup(op_type))
        except Caffe2Error:
            return None
