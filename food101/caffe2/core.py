"""Building NetDefs from Python: caffe2.python.core on the food101 runtime.

    net = core.Net("train")
    net.AddExternalInput("data", "conv1_w", "conv1_b")
    conv1 = net.Conv(["data", "conv1_w", "conv1_b"], "conv1", kernel=5)   # a BlobReference
    relu1 = conv1.Relu([], "relu1")                                       # ops from a blob
    xs = net.Split("relu1", 2, axis=1)          # an int: 2 auto-named outputs "train/Split:0", ":1"
    grad_map = net.AddGradientOperators([loss])  # {BlobReference: BlobReference}

`net.<OpType>(inputs, outputs, **args)` appends one OperatorDef: inputs/outputs are names,
BlobReferences or lists of them (plain strings get the current NameScope prefix), keyword
arguments become `Argument`s by Caffe2's `MakeArgument` rules, and `engine`, `device_option`,
`name`, `control_input`, `random_seed` go to their OperatorDef fields. The op type must be
registered (ops/registry.py), so a typo fails where the net is built, naming the closest types.

Gradients differ from real Caffe2 by design: `AddGradientOperators` appends one
`AutogradGradient` op (see executor.py) instead of one hand-written gradient op per forward op;
the gradient blob names (`<blob>_grad`, `<loss>_autogen_grad`) are Caffe2's.
"""
import copy
import sys
from collections import namedtuple

import numpy as np

from food101.caffe2 import _import_c_extension as C  # noqa: F401 (scripts call core.C.create_db, ...)
from food101.caffe2 import gradient_defs, scope
from food101.caffe2.errors import UnknownOperatorError
from food101.caffe2.executor import add_gradient_ops
from food101.caffe2.ops import registry
from food101.caffe2.python_functions import python_op_arguments, register_python_op
from food101.caffe2.proto import caffe2_pb2
from food101.caffe2.utils import MakeArgument, as_netdef, make_op  # noqa: F401 (MakeArgument: core's public name)

DataType = caffe2_pb2.TensorProto
NameScope = scope.NameScope
DeviceScope = scope.DeviceScope
CurrentNameScope = scope.CurrentNameScope
CurrentDeviceScope = scope.CurrentDeviceScope

GradientSlice = namedtuple("GradientSlice", ["indices", "values"])

_GPU_DEVICE_TYPES = frozenset({caffe2_pb2.CUDA, caffe2_pb2.HIP})


def IsGPUDeviceType(device_type):
    return device_type in _GPU_DEVICE_TYPES


def IsOperator(op_type):
    """True when `op_type` is a registered operator type."""
    try:
        registry.lookup(op_type)
    except UnknownOperatorError:
        return False
    return True


def _op_factory_or_error(op_type, net_name):
    """Raise AttributeError (so hasattr() works) naming the net and the closest op types."""
    if op_type.startswith("__"):
        raise AttributeError(op_type)
    try:
        registry.lookup(op_type, net_name)
    except UnknownOperatorError as e:
        raise AttributeError("Method %s is not a registered operator (%s)" % (op_type, e)) from None


def DeviceOption(device_type, device_id=0, random_seed=None, node_name=None, numa_node_id=None,
                 extra_info=None):
    """A caffe2_pb2.DeviceOption, e.g. DeviceOption(caffe2_pb2.CUDA, 0)."""
    option = caffe2_pb2.DeviceOption()
    option.device_type = device_type
    option.device_id = device_id
    if node_name is not None:
        option.node_name = node_name
    if random_seed is not None:
        option.random_seed = random_seed
    if numa_node_id is not None:
        option.numa_node_id = numa_node_id
    if extra_info is not None:
        option.extra_info.extend(extra_info)
    return option


def device_option_equal(a, b, ignore_node_name=True, ignore_random_seed=True):
    """Caffe2's core.device_option_equal: two CPU options are equal whatever their device_id;
    otherwise the device ids decide (Caffe2 does not compare GPU device types)."""
    if not a or not b:
        return a == b
    if not ignore_node_name and a.node_name != b.node_name:
        return False
    if not ignore_random_seed and a.random_seed != b.random_seed:
        return False
    if not a.device_type or not b.device_type:
        return not a.device_type and not b.device_type
    return a.device_id == b.device_id


class BlobReference:
    """The name of a blob, optionally tied to the net that produces it.

    Compares and hashes like its name, so it can key dicts shared with plain strings.
    `blob.Relu([], "y")` creates an op in the blob's net with the blob as first input.
    """

    def __init__(self, name, net=None):
        if isinstance(name, bytes):
            name = name.decode("utf-8")
        self._name = name if isinstance(name, str) else str(name)
        self._from_net = net
        self.meta = {}  # helpers may attach information here, as in Caffe2

    def __hash__(self):
        return hash(self._name)

    def __eq__(self, other):
        if isinstance(other, str):
            return self._name == other
        if isinstance(other, bytes):
            return self._name == other.decode("utf-8")
        if isinstance(other, BlobReference):
            return self._name == other._name
        return False

    def __ne__(self, other):
        return not self == other

    def __str__(self):
        return self._name

    def __repr__(self):
        return 'BlobReference("%s")' % self._name

    def __add__(self, other):
        if not isinstance(other, str):
            raise TypeError("cannot add %r to BlobReference %r: only strings" % (other, self._name))
        return BlobReference(self._name + other, self._from_net)

    def __radd__(self, other):
        if not isinstance(other, str):
            raise TypeError("cannot add BlobReference %r to %r: only strings" % (self._name, other))
        return BlobReference(other + self._name, self._from_net)

    def Net(self):
        return self._from_net

    def GetNameScope(self):
        return self._name[:self._name.rfind(scope._NAMESCOPE_SEPARATOR) + 1]

    def GetUnscopedName(self):
        return self._name[self._name.rfind(scope._NAMESCOPE_SEPARATOR) + 1:]

    def _CreateAndAddToNet(self, op_type, inputs=None, *args, **kwargs):
        if inputs is None:
            inputs = []
        elif isinstance(inputs, (str, bytes, BlobReference)):
            inputs = [inputs]
        else:
            inputs = list(inputs)
        return getattr(self._from_net, op_type)([self] + inputs, *args, **kwargs)

    def __getattr__(self, op_type):
        if op_type.startswith("_"):
            raise AttributeError(op_type)
        if self._from_net is None:
            raise AttributeError(
                "blob %r has no net to create %s in: create the op from an explicit net object"
                % (self._name, op_type))
        _op_factory_or_error(op_type, self._from_net.Name())
        return lambda *args, **kwargs: self._CreateAndAddToNet(op_type, *args, **kwargs)


def ScopedName(name):
    """`name` with the current NameScope prefix."""
    if isinstance(name, bytes):
        name = name.decode("ascii")
    return scope.CurrentNameScope() + name


def ScopedBlobReference(name, *args, **kwargs):
    """A BlobReference to `name` inside the current NameScope."""
    return BlobReference(ScopedName(name), *args, **kwargs)


def _RectifyInputOutput(blobs, net=None):
    """str / BlobReference / list of them -> list of BlobReference (strings get the scope)."""
    if isinstance(blobs, (str, bytes)):
        return [ScopedBlobReference(blobs, net=net)]
    if isinstance(blobs, BlobReference):
        return [blobs]
    if isinstance(blobs, (list, tuple)):
        rectified = []
        for blob in blobs:
            if isinstance(blob, (str, bytes)):
                rectified.append(ScopedBlobReference(blob, net=net))
            elif isinstance(blob, BlobReference):
                rectified.append(blob)
            else:
                raise TypeError("I/O blob #%d is %r of type %s; expected a name or a BlobReference"
                                % (len(rectified), blob, type(blob).__name__))
        return rectified
    raise TypeError("blobs must be a name, a BlobReference or a list of them, got %r of type %s"
                    % (blobs, type(blobs).__name__))


def CreatePythonOperator(f, inputs, outputs, grad_f=None, pass_workspace=False,
                         python_func_type=None, *args, **kwargs):
    """An OperatorDef of the Python op running `f` (see ops/python.py)."""
    kwargs["token"] = register_python_op(f, grad_f, python_func_type, pass_workspace=pass_workspace)
    return CreateOperator("Python", inputs, outputs, *args, **kwargs)


def CreateOperator(operator_type, inputs, outputs, name="", control_input=None,
                   device_option=None, arg=None, engine=None, debug_info=None, **kwargs):
    """One caffe2_pb2.OperatorDef (utils.make_op) with NameScope'd blob names; the device is
    `device_option`, else the current DeviceScope.

    Keyword arguments whose value is None are left out (the op's default applies)."""
    random_seed = kwargs.pop("random_seed", None)  # lives in the device option, not the args
    operator = make_op(operator_type, _RectifyInputOutput(inputs), _RectifyInputOutput(outputs),
                       name=name, device_option=device_option if device_option is not None
                       else scope.CurrentDeviceScope(), arg=arg or (), **kwargs)
    if control_input:
        operator.control_input.extend(str(i) for i in _RectifyInputOutput(control_input))
    if engine is not None:
        operator.engine = engine
    if debug_info is not None:
        operator.debug_info = debug_info
    if random_seed is not None:
        operator.device_option.random_seed = random_seed
    return operator


def InferBlobDevices(net):
    """{blob: DeviceOption of the op that writes it} for every op output in `net`."""
    mapping = {}
    for op in as_netdef(net).op:
        for blob in op.output:
            mapping[blob] = op.device_option
    return mapping


def InferOpBlobDevicesAsDict(op):
    """({input: device}, {output: device}): every blob of a CPU/CUDA op lives on the op's device."""
    return ({b: op.device_option for b in op.input}, {b: op.device_option for b in op.output})


def _get_blob_ref(name_or_ref):
    return name_or_ref if isinstance(name_or_ref, BlobReference) else BlobReference(name_or_ref)


def _creation_site():
    """[(file, line, function)] of the Python frames outside this module, innermost first:
    where the user's code created an op."""
    frames = []
    frame = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        if code.co_filename != __file__:
            frames.append((code.co_filename, frame.f_lineno, code.co_name))
        frame = frame.f_back
    return frames


def _run_all_on_gpu(netdef, gpu_id, use_cudnn):
    netdef.device_option.CopyFrom(DeviceOption(caffe2_pb2.CUDA, gpu_id))
    for op in netdef.op:
        if use_cudnn:
            op.engine = "CUDNN"
        if op.type == "RecurrentNetwork":
            for arg in op.arg:
                if arg.name == "step_net":
                    _run_all_on_gpu(arg.n, gpu_id, use_cudnn)


def _run_if_immediate(op):
    from food101.caffe2 import workspace  # workspace imports core
    if workspace.IsImmediate():
        workspace.RunOperatorImmediate(op)


class Net:
    """A NetDef under construction (`Proto()` is the live caffe2_pb2.NetDef)."""

    _net_names_used = set()

    @staticmethod
    def _get_next_net_name(basename):
        """Net names are unique per process, as in Caffe2: "train", then "train_1", ..."""
        name = basename
        index = 1
        while name in Net._net_names_used:
            name = "%s_%d" % (basename, index)
            index += 1
        Net._net_names_used.add(name)
        return name

    def __init__(self, name_or_proto, inplace=False):
        """From a name (a new empty net) or a NetDef (copied unless `inplace`)."""
        self._registered_blob_names = set()
        self._recreate_lookup_tables = False
        self._op_outputs = set()
        self._external_input_map = set()
        self._next_blob_name_ids = {}
        self._op_stack_traces = {}  # op index -> [(file, line, function)], innermost first
        self._input_record = self._output_record = None
        if isinstance(name_or_proto, caffe2_pb2.NetDef):
            if inplace:
                self._net = name_or_proto
            else:
                self._net = caffe2_pb2.NetDef()
                self._net.CopyFrom(name_or_proto)
            self._RecreateLookupTables()
            self._next_name_index = self._first_free_autogen_index()
            name = self._net.name
        elif isinstance(name_or_proto, (str, BlobReference)) or name_or_proto is None:
            self._net = caffe2_pb2.NetDef()
            self._next_name_index = 0
            name = "net" if name_or_proto is None else str(name_or_proto)  # Caffe2's default
        else:
            raise TypeError("Net() takes a name or a caffe2_pb2.NetDef, got %r" % (name_or_proto,))
        self._net.name = Net._get_next_net_name(name)

    def _first_free_autogen_index(self):
        prefix = self._net.name + "_blob_"
        used = [-1]
        for op in self._net.op:
            for blob in list(op.input) + list(op.output):
                if blob.startswith(prefix) and blob[len(prefix):].isdigit():
                    used.append(int(blob[len(prefix):]))
        return max(used) + 1

    # -- lookup tables: which blobs this net defines ------------------------------------------
    def _RecreateLookupTables(self):
        self._op_outputs = {o for op in self._net.op for o in op.output}
        self._external_input_map = set(self._net.external_input)
        self._recreate_lookup_tables = False

    def _InvalidateLookupTables(self):
        self._recreate_lookup_tables = True

    def BlobIsDefined(self, blob):
        """True if an op of this net writes `blob` or it is an external input."""
        if self._recreate_lookup_tables:
            self._RecreateLookupTables()
        name = str(blob)
        return name in self._op_outputs or name in self._external_input_map

    def UsesBlob(self, blob):
        name = str(blob)
        return any(name in op.input or name in op.output for op in self._net.op)

    def UsedBlobNames(self):
        names = set()
        for op in self._net.op:
            names.update(op.input)
            names.update(op.output)
        return names

    def GetBlobRef(self, blob_name):
        """A BlobReference to a blob this net defines (KeyError otherwise)."""
        blob_name = str(blob_name)
        if not self.BlobIsDefined(blob_name):
            raise KeyError("net %r does not define blob %r" % (self.Name(), blob_name))
        return BlobReference(blob_name, self)

    # -- identity and proto -------------------------------------------------------------------
    def Name(self):
        return self._net.name

    def __str__(self):
        return self.Name()

    def __repr__(self):
        return "<Net %r: %d ops>" % (self._net.name, len(self._net.op))

    def Proto(self):
        """The live NetDef. Editing it is allowed; lookups are rebuilt on next use."""
        self._InvalidateLookupTables()
        return self._net

    def Const(self, array, blob_out=None, dtype=None):
        """A GivenTensor*Fill op holding `array` (Caffe2's Net.Const)."""
        array = np.asarray(array) if dtype is None else np.asarray(array, dtype=dtype)
        fills = {np.dtype(np.float32): "GivenTensorFill",
                 np.dtype(np.float64): "GivenTensorDoubleFill",
                 np.dtype(np.int32): "GivenTensorIntFill",
                 np.dtype(np.int64): "GivenTensorInt64Fill",
                 np.dtype(np.bool_): "GivenTensorBoolFill"}
        if array.dtype not in fills:
            raise TypeError("Net.Const: no fill op for dtype %s" % array.dtype)
        values = array.flatten().tolist()
        return getattr(self, fills[array.dtype])([], blob_out or 1, shape=list(array.shape),
                                                 values=values)

    # -- names ----------------------------------------------------------------------------------
    def NextName(self, prefix=None, output_id=None):
        """An unused blob name: "<net>/<prefix>[_<n>][:<output_id>]", or "<net>_blob_<n>"."""
        if prefix:
            base = self._net.name + "/" + prefix
            suffix = ":" + str(output_id) if output_id is not None else ""
            name = base + suffix
            key = name
            index = self._next_blob_name_ids.get(key, 2)
            while self.BlobIsDefined(str(ScopedBlobReference(name))):
                name = base + "_" + str(index) + suffix
                index += 1
                self._next_blob_name_ids[key] = index
        else:
            name = self._net.name + "_blob_" + str(self._next_name_index)
            self._next_name_index += 1
        return str(name)

    def NextBlob(self, prefix="unnamed"):
        """A BlobReference no op defines and no earlier NextBlob returned."""
        base = BlobReference(prefix)
        blob = base
        index = 0
        while str(blob) in self._registered_blob_names or self.BlobIsDefined(blob):
            blob = base + "_auto_" + str(index)
            index += 1
        self._registered_blob_names.add(str(blob))
        return blob

    def NextScopedBlob(self, prefix="unnamed"):
        return self.NextBlob(ScopedName(prefix))

    # -- external inputs and outputs ------------------------------------------------------------
    def AddExternalInput(self, *inputs):
        """Declare blobs the net reads from the workspace; returns their references."""
        if not inputs:
            raise ValueError("AddExternalInput needs at least one blob")
        if self._recreate_lookup_tables:
            self._RecreateLookupTables()
        names = [str(i) for i in inputs]
        for i, name in enumerate(names):
            if name in self._external_input_map or name in names[:i]:
                raise ValueError("net %r already has an external input named %r"
                                 % (self.Name(), name))
        self._net.external_input.extend(names)
        self._external_input_map.update(names)
        refs = [BlobReference(name, self) for name in names]
        return refs[0] if len(refs) == 1 else refs

    def AddExternalOutput(self, *outputs):
        """Declare blobs the net leaves for the caller; each must be written by the net."""
        for output in outputs:
            if not self.BlobIsDefined(output):
                raise ValueError("net %r: external output %r is not defined by the net"
                                 % (self.Name(), str(output)))
        self._net.external_output.extend(str(o) for o in outputs)
        refs = [_get_blob_ref(str(o)) for o in outputs]
        return refs[0] if len(refs) == 1 else refs

    def AddExternalOutputs(self, *outputs):
        return self.AddExternalOutput(*outputs)

    def AddExternalInputs(self, *inputs):
        return self.AddExternalInput(*inputs)

    # -- schema records (caffe2.python.schema Structs) as the net's inputs and outputs ---------
    def set_input_record(self, input_record):
        """Declare a schema record as the net's input: a record without blobs gets blobs
        named in this net's NameScope; every field blob becomes an external input."""
        assert self._input_record is None or (
            input_record.has_blobs()
            and set(input_record.field_blobs()) == set(self._input_record.field_blobs())), (
            "Input schema cannot be reset")
        if not input_record.has_blobs():
            # the record's own schema module (Caffe2's schema.py) builds the blobs
            schema = sys.modules[type(input_record).__module__]
            with NameScope(self.Name()):
                self._input_record = schema.NewRecord(self, input_record)
        else:
            self._input_record = input_record
        for blob in self._input_record.field_blobs():
            if blob not in self.external_inputs:
                self.AddExternalInput(blob)
        return self._input_record

    def set_output_record(self, record):
        assert self._output_record is None or (
            record.has_blobs()
            and set(record.field_blobs()) == set(self._output_record.field_blobs())), (
            "Output schema cannot be reset")
        for blob in record.field_blobs():
            assert self.BlobIsDefined(blob), "{} is not defined".format(blob)
        for blob in record.field_blobs():
            if blob not in self.external_outputs:
                self.AddExternalOutput(blob)
        self._output_record = record

    def input_record(self):
        return self._input_record

    def output_record(self):
        return self._output_record

    def AddScopedExternalInputs(self, *inputs):
        res = self.AddExternalInput(*[ScopedBlobReference(b) for b in inputs])
        return res if isinstance(res, list) else [res]

    def AddScopedExternalOutputs(self, *outputs):
        res = self.AddExternalOutput(*[ScopedBlobReference(b) for b in outputs])
        return res if isinstance(res, list) else [res]

    @property
    def external_inputs(self):
        return [_get_blob_ref(x) for x in self._net.external_input]

    @property
    def external_outputs(self):
        return [_get_blob_ref(x) for x in self._net.external_output]

    # -- composing nets -------------------------------------------------------------------------
    def _ExtendOps(self, new_ops):
        self._net.op.extend(new_ops)
        for op in new_ops:
            self._op_outputs.update(op.output)

    def AppendNet(self, net, device_option=None):
        """Append the ops of `net` (a Net or NetDef) and merge its external inputs/outputs."""
        other = as_netdef(net)
        if self._recreate_lookup_tables:
            self._RecreateLookupTables()
        for name in other.external_input:
            if name not in self._net.external_input and name not in self._op_outputs:
                self._net.external_input.append(name)
                self._external_input_map.add(name)
        self._net.external_output.extend(
            [o for o in other.external_output if o not in self._net.external_output])
        ops = list(other.op)
        if device_option is not None:
            ops = [copy.deepcopy(op) for op in ops]
            for op in ops:
                op.device_option.CopyFrom(device_option)
        self._ExtendOps(ops)
        return self

    def Clone(self, name, blob_remap=None, op_id_mask=None, remap_funcs=None, keep_schema=True,
              update_external_list=False):
        """A copy named `name`, with blobs renamed by `blob_remap` and only the ops whose
        indices are in `op_id_mask` (all by default)."""
        blob_remap = {str(k): str(v) for k, v in (blob_remap or {}).items()}
        remap_funcs = remap_funcs or {}
        proto = self._net
        new_proto = caffe2_pb2.NetDef()
        new_proto.CopyFrom(proto)
        new_proto.name = name
        if op_id_mask is None:
            op_id_mask = range(len(proto.op))

        def remap_list(field):
            renamed = [blob_remap.get(b, b) for b in field]
            del field[:]
            field.extend(renamed)

        def remap_op(op):
            new_op = caffe2_pb2.OperatorDef()
            new_op.CopyFrom(op)
            remap_list(new_op.input)
            remap_list(new_op.output)
            if new_op.type in remap_funcs:
                remap_funcs[new_op.type](new_op, ("%s/" % name) if name else "", blob_remap)
            return new_op

        del new_proto.op[:]
        new_proto.op.extend(remap_op(proto.op[i]) for i in op_id_mask)
        remap_list(new_proto.external_input)
        remap_list(new_proto.external_output)
        new_net = Net(new_proto, inplace=True)
        if update_external_list:
            produced, used = [], set()
            inputs = []
            for op in new_proto.op:
                for blob in op.input:
                    if blob not in produced:
                        if blob not in inputs:
                            inputs.append(blob)
                    else:
                        used.add(blob)
                for blob in op.output:
                    if blob not in produced:
                        produced.append(blob)
            del new_proto.external_input[:]
            del new_proto.external_output[:]
            new_proto.external_input.extend(inputs)
            new_proto.external_output.extend(b for b in produced if b not in used)
            new_net._InvalidateLookupTables()
        return new_net

    def ClonePartial(self, name, inputs, outputs, remap_funcs=None):
        """A net `name` with only the ops that compute `outputs` from `inputs`, and references
        to its outputs: (new_net, [BlobReference]).

        inputs: {blob of this net: its name in the clone}, a list of such pairs, or a list of
        blobs (names kept). Blobs made inside the clone get the prefix "<name>/"; blobs it
        reads that are neither inputs nor made inside keep their names (external inputs).
        An input that an op needed for the outputs would itself produce is an error."""
        if isinstance(inputs, dict):
            pairs = list(inputs.items())
        elif isinstance(inputs, list) and all(isinstance(i, tuple) and len(i) == 2 for i in inputs):
            pairs = list(inputs)
        else:
            pairs = [(i, i) for i in inputs]
        for output in outputs:
            assert self.BlobIsDefined(output), "{} is not defined".format(output)
        input_names = {str(k): str(v) for k, v in pairs}
        output_names = [str(o) for o in outputs]
        ssa, versions = get_ssa(self._net, {b: 0 for b in input_names})
        used = get_op_ids_in_path(ssa, versions, list(input_names), output_names)
        disallowed = get_op_ids_in_path(ssa, versions, [], list(input_names))
        assert not set(used) & set(disallowed), (
            "Cannot partially clone net: some of the ops required would generate the given input.")
        undefined = get_undefined_blobs([ssa[i] for i in used]) - set(input_names)
        prefix = (name + "/") if name else ""

        def remap(blob):
            if blob in input_names:
                return input_names[blob]
            return blob if blob in undefined else prefix + blob

        mapping = {b: remap(b) for b in versions}
        new_net = self.Clone(name, mapping, used, remap_funcs)
        new_in = [mapping[i] for i in input_names] + sorted(undefined)
        new_out = [mapping[o] for o in output_names]
        proto = new_net.Proto()
        del proto.external_input[:]
        proto.external_input.extend(new_in)
        del proto.external_output[:]
        proto.external_output.extend(new_out)
        return new_net, [new_net.GetBlobRef(o) for o in new_out]

    def RunAllOnGPU(self, gpu_id=0, use_cudnn=False):
        """Put the whole net on CUDA device `gpu_id` (the NetDef's device_option), with the
        step nets of RecurrentNetwork ops, as Caffe2 does."""
        _run_all_on_gpu(self._net, gpu_id, use_cudnn)

    def RunAllOnCPU(self):
        self._net.device_option.CopyFrom(DeviceOption(caffe2_pb2.CPU))

    # -- more of Caffe2's Net API (attributes, complete nets, rerouting) ---------------------------
    def _CheckLookupTables(self):
        """Caffe2's consistency check of the lookup tables against the proto."""
        if self._recreate_lookup_tables:
            self._RecreateLookupTables()
        expected = {o for op in self._net.op for o in op.output}
        assert self._op_outputs >= expected, "net %r: stale op-output table" % self.Name()

    def add_attribute(self, name, obj):
        self._attr_dict = getattr(self, "_attr_dict", {})
        self._attr_dict.setdefault(name, []).append(obj)

    def get_attributes(self, name):
        return getattr(self, "_attr_dict", {}).get(name, [])

    def PopulateProtoWithFileName(self):
        """Name each op this net created "<file>:<line>:<function>" after the code that
        created it (Caffe2 does this to point errors at the user's code)."""
        for index, op in enumerate(self._net.op):
            site = self._op_stack_traces.get(index)
            if site:
                op.name = ":".join(map(str, site[0]))

    def insert_op_at_idx(self, op, op_idx):
        ops = list(self._net.op)
        ops.insert(op_idx, op)
        del self._net.op[:]
        self._net.op.extend(ops)
        self._InvalidateLookupTables()

    def reroute_tensor(self, tensor, new_producer, can_modify=None):
        """Insert `new_producer` (which reads `tensor`) right after the op that writes `tensor`
        and point every later reader (or only `can_modify` ops) at its output."""
        tensor = str(tensor)
        if tensor in self._net.external_input:
            index = 0
        else:
            writers = [i for i, op in enumerate(self._net.op) if tensor in op.output]
            if not writers:
                raise ValueError("reroute_tensor: no op of net %r writes %r" % (self.Name(), tensor))
            index = writers[-1] + 1
        new_output = new_producer.output[0]
        for op in self._net.op[index:]:
            if can_modify is not None and op not in can_modify:
                continue
            for i, name in enumerate(op.input):
                if name == tensor:
                    op.input[i] = new_output
        self.insert_op_at_idx(new_producer, index)

    # -- gradients ------------------------------------------------------------------------------
    def AddGradientOperators(self, ys, skip=0):
        """Append what computes d(ys)/d(blob) for every blob the losses depend on.

        ys: a list of loss blobs (each seeded with a 1.0 fill, `<y>_autogen_grad`), or a dict
        {loss: gradient blob fed by the caller, or None for the 1.0 fill}.
        skip: the first `skip` ops get no gradients (data preparation).
        Returns {BlobReference(blob): BlobReference(blob_grad)}, losses included; a blob read
        only by a Gather maps to GradientSlice(indices, values), as in Caffe2.
        """
        if isinstance(ys, (str, bytes, BlobReference)):
            ys = [ys]
        if isinstance(ys, dict):
            request = {str(y): None if g is None else str(g) for y, g in ys.items()}
        else:
            request = [str(y) for y in ys]
        device = scope.CurrentDeviceScope()
        if skip:
            # build the gradient ops over the ops after `skip` only, then append them here
            view = caffe2_pb2.NetDef()
            view.CopyFrom(self._net)
            del view.op[:]
            view.op.extend(self._net.op[skip:])
            before = len(view.op)
            grad_map = add_gradient_ops(view, request, device)
            self._ExtendOps(list(view.op[before:]))
        else:
            before = len(self._net.op)
            grad_map = add_gradient_ops(self._net, request, device)
            self._op_outputs.update(o for op in self._net.op[before:] for o in op.output)
        return {BlobReference(k): GradientSlice(BlobReference(v[0]), BlobReference(v[1]))
                if isinstance(v, tuple) else BlobReference(v) for k, v in grad_map.items()}

    def Python(self, f, grad_f=None, python_func_type=None, pass_workspace=False,
               grad_output_indices=None, grad_input_indices=None):
        """A Python function as an op: `net.Python(f, grad_f)(inputs, outputs)` (ops/python.py).
        f / grad_f: functions (inputs, outputs[, workspace]) or (builder, args, kwargs) tuples."""
        core_kwargs = python_op_arguments(f, grad_f, python_func_type, pass_workspace)
        core_kwargs["grad_output_indices"] = grad_output_indices or []
        core_kwargs["grad_input_indices"] = grad_input_indices or []
        return lambda *args, **kwargs: self._CreateAndAddToSelf(
            "Python", *args, **dict(kwargs, **core_kwargs))

    # -- op creation ----------------------------------------------------------------------------
    def _CreateAndAddToSelf(self, op_type, inputs, outputs=None, **kwargs):
        inputs = _RectifyInputOutput(inputs)
        for blob in inputs:
            if not self.BlobIsDefined(blob):
                self.AddExternalInput(blob)
        if outputs is None:
            outputs = self.NextName(prefix=op_type)
        elif isinstance(outputs, int) and not isinstance(outputs, bool):
            outputs = [self.NextName(prefix=op_type, output_id=i) for i in range(outputs)]
        outputs = _RectifyInputOutput(outputs, net=self)
        op = CreateOperator(op_type, inputs, outputs, **kwargs)
        self._ExtendOps([op])
        self._op_stack_traces[len(self._net.op) - 1] = _creation_site()
        _run_if_immediate(op)
        if len(op.output) == 0:
            return None
        if len(op.output) == 1:
            return BlobReference(op.output[0], self)
        return tuple(BlobReference(o, self) for o in op.output)

    def __getattr__(self, op_type):
        if op_type.startswith("_"):
            raise AttributeError(op_type)
        _op_factory_or_error(op_type, self._net.name)
        return lambda *args, **kwargs: self._CreateAndAddToSelf(op_type, *args, **kwargs)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(registry.registered_types()))


# -- Caffe2's per-op gradient API, engine preferences, harness-facing names ------------------
# (Separate from the autograd-based AddGradientOperators above: this serves code that asks for
# Caffe2's gradient OperatorDefs one op at a time: gradient checkers, hand-built backward nets.)

class GradientRegistry:
    """Caffe2's core.GradientRegistry.

    GetGradientForOp(op, g_output) -> (gradient OperatorDefs, gradient per input or None), the
    ops with Caffe2's types and blob names (gradient_defs.py); `RegisterGradient(op_type)`
    registers a Python maker `f(op, g_output) -> (ops, g_input)` that takes precedence."""

    gradient_registry_ = {}

    @classmethod
    def RegisterGradient(cls, op_type):
        def wrapper(func):
            cls.gradient_registry_[op_type] = func
            return func
        return wrapper

    @classmethod
    def GetGradientForOp(cls, op, g_output):
        g_output = [None if g is None else str(g) if not isinstance(g, GradientSlice) else g
                    for g in g_output]
        if op.type in cls.gradient_registry_:
            grad_ops, g_input = cls.gradient_registry_[op.type](op, g_output)
        else:
            if any(isinstance(g, GradientSlice) for g in g_output):
                raise GradientNotDefined("%s: sparse (GradientSlice) output gradients are not "
                                         "supported by the project's gradient ops" % op.type)
            try:
                grad_ops, g_input = gradient_defs.gradient_for_op(op, g_output, MakeArgument)
            except UnknownOperatorError as e:
                raise GradientNotDefined("no gradient for op %r: %s" % (op.type, e)) from None
        return list(grad_ops), [None if g is None else g if isinstance(g, GradientSlice)
                                else BlobReference(g) for g in g_input]

    @classmethod
    def GetBackwardPass(cls, operators, ys, ys_generate_gradient=False):
        """(gradient ops for `operators`, {blob: gradient}) as Caffe2's GetBackwardPass.

        ys: {blob: gradient blob name (or None)} or a list of blobs. With
        ys_generate_gradient (or a None / list entry) a ConstantFill of 1.0 seeds
        `<y>_autogen_grad`. A blob used by several ops gets its gradients summed."""
        if not isinstance(ys, dict):
            ys = {y: None for y in ys}
        grad_ops = []
        grad_map = {}
        for y, g in ys.items():
            y = str(y)
            if g is None or ys_generate_gradient:
                g = y + "_autogen_grad"
                fill = CreateOperator("ConstantFill", [y], [g], value=1.0)
                fill.is_gradient_op = True
                grad_ops.append(fill)
            grad_map[y] = str(g)
        split_count = {}
        for op in reversed(list(operators)):
            g_output = [grad_map.get(o) for o in op.output]
            if all(g is None for g in g_output):
                continue
            ops, g_input = cls.GetGradientForOp(op, g_output)
            for o in op.output:  # consumed: earlier versions of these names are other blobs
                if o not in op.input:
                    grad_map.pop(o, None)
            renames = {}
            for name, g in zip(op.input, g_input):
                if g is None or isinstance(g, GradientSlice):
                    if g is not None:
                        grad_map[name] = g
                    continue
                g = str(g)
                previous = grad_map.get(name)
                if previous is not None and previous != g or (
                        previous == g and name not in op.output and g not in g_output):
                    index = split_count.get(g, 0)
                    split_count[g] = index + 1
                    renamed = "%s_autosplit_%d" % (g, index)
                    renames[g] = (renamed, previous)
                else:
                    grad_map[name] = g
            for grad_op in ops:
                for i, out in enumerate(grad_op.output):
                    if out in renames:
                        grad_op.output[i] = renames[out][0]
                for i, inp in enumerate(grad_op.input):
                    if inp in renames:
                        grad_op.input[i] = renames[inp][0]
            grad_ops.extend(ops)
            for g, (renamed, previous) in renames.items():
                total = CreateOperator("Sum", [previous, renamed], [previous])
                total.is_gradient_op = True
                grad_ops.append(total)
        return grad_ops, {name: g if isinstance(g, GradientSlice) else BlobReference(g)
                          for name, g in grad_map.items()}


GradientNotDefined = gradient_defs.GradientNotDefined

_ENGINE_PREFS = {"global": {}, "per_op": {}}


def SetGlobalEnginePref(engine_prefs):
    """Recorded only: every engine runs the op's one torch kernel here."""
    _ENGINE_PREFS["global"] = dict(engine_prefs)


def SetEnginePref(op_engine_prefs=None, global_engine_prefs=None):
    """Caffe2's engine preferences: recorded (GetEnginePref), while every engine name maps onto
    the op's one torch implementation."""
    _ENGINE_PREFS["per_op"] = dict(op_engine_prefs or {})
    _ENGINE_PREFS["global"] = dict(global_engine_prefs or {})


def SetOpEnginePref(op_type, prefs):
    _ENGINE_PREFS["per_op"][op_type] = prefs


def GetEnginePref():
    return {"global": dict(_ENGINE_PREFS["global"]), "per_op": dict(_ENGINE_PREFS["per_op"])}


_GLOBAL_INIT_ARGS = []


def GlobalInit(args):
    """Caffe2 parsed glog/gflags flags here; the project records them (GetGlobalInitArgs)."""
    _GLOBAL_INIT_ARGS[:] = list(args)
    return True


def GetGlobalInitArgs():
    return list(_GLOBAL_INIT_ARGS)


def _GetRegisteredOperators():
    return set(registry.registered_types())


_REGISTERED_OPERATORS = _GetRegisteredOperators()


def RefreshRegisteredOperators():
    global _REGISTERED_OPERATORS
    _REGISTERED_OPERATORS = _GetRegisteredOperators()


def _engine_is_known(engine):
    return engine in ("", "DEFAULT", "CUDNN", "EIGEN", "MKLDNN", "IDEEP", "NNPACK", "cuDNN",
                      "DEPTHWISE_3x3", "CUDA", "HIP", "MIOPEN")


def IsOperatorWithEngine(op_type, engine):
    """True for a registered op and an engine Caffe2 ships (all run the one torch kernel);
    False for an engine name Caffe2 does not know."""
    return IsOperator(op_type) and _engine_is_known(engine)


def InferOpBlobDevices(op):
    inputs, outputs = InferOpBlobDevicesAsDict(op)
    return [inputs[b] for b in op.input], [outputs[b] for b in op.output]


def InferOpDeviceAsBlobDevices(op):
    return InferOpBlobDevices(op)


def get_ssa(net, blob_versions=None):
    """Caffe2's SSA view of a net: ([(inputs, outputs) per op as (name, version)], versions).

    Every write makes a new version; blobs read before any write (the external inputs, or when
    the net declares none, every such op input) are version 0 and listed in `versions`."""
    proto = as_netdef(net)
    versions = dict(blob_versions or {})
    for name in proto.external_input:
        versions.setdefault(str(name), 0)
    ssa = []
    for op in proto.op:
        if not proto.external_input:
            for name in op.input:
                versions.setdefault(str(name), 0)
        inputs = [(str(b), versions.get(str(b), 0)) for b in op.input]
        for b in op.output:
            versions[str(b)] = versions.get(str(b), 0) + 1
        outputs = [(str(b), versions[str(b)]) for b in op.output]
        ssa.append((inputs, outputs))
    return ssa, versions


def get_undefined_blobs(ssa):
    """Names of the blobs the ops read before any of them writes them (version 0)."""
    return {name for inputs, _ in ssa for name, version in inputs if version == 0}


def get_op_ids_in_path(ssa, blob_versions, inputs, outputs):
    """Sorted indices of the ops that compute the last versions of `outputs`, walking back
    from them and stopping at `inputs` (taken in their last versions too)."""
    stop = {(str(i), blob_versions[str(i)]) for i in inputs}
    producers = get_output_producers(ssa)
    queue = [(str(o), blob_versions[str(o)]) for o in outputs]
    used = set()
    while queue:
        blob = queue.pop()
        if blob not in stop and blob in producers and producers[blob] not in used:
            used.add(producers[blob])
            queue.extend(ssa[producers[blob]][0])
    return sorted(used)


def get_output_producers(ssa):
    producers = {}
    for index, (_, outputs) in enumerate(ssa):
        for b in outputs:
            producers[b] = index
    return producers


__all__ = [
    "BlobReference", "CreateOperator", "DataType", "DeviceOption", "DeviceScope", "GradientSlice",
    "InferBlobDevices", "IsGPUDeviceType", "IsOperator", "MakeArgument", "NameScope", "Net",
    "ScopedBlobReference", "ScopedName", "caffe2_pb2",
]


# Plans and execution steps (core_plan.py builds them on the Net above; plan_executor.py runs them)
from food101.caffe2.core_plan import (  # noqa: E402
    ExecutionStep, Plan, add_nets_in_order, execution_step, get_net_name, output_to_list,
    scoped_execution_step, to_execution_step)
from food101.caffe2.device_copies import (  # noqa: E402
    InjectCrossDeviceCopies, InjectDeviceCopiesAmongNets, InjectDeviceCopiesAmongNetsWithoutB2D,
    RemapEntry, device_equal)
