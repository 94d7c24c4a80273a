"""Caffe2's plans: `core.ExecutionStep`, `core.Plan` and the `execution_step` helpers.

A PlanDef names nets and a tree of ExecutionSteps; each step runs either nets or substeps,
`num_iter` times (once by default) or until its `should_stop_blob` holds true:

    step = core.execution_step("train", [init_step, core.execution_step("loop", net, num_iter=10)])
    plan = core.Plan(step)                  # the plan carries every net its steps name
    workspace.RunPlan(plan)                 # plan_executor.py runs it

These builders only assemble protos (re-exported by core.py); running is plan_executor.py's.
"""
from collections import OrderedDict

from food101.caffe2.core import BlobReference, Net, ScopedName
from food101.caffe2.proto import caffe2_pb2


def get_net_name(netlike):
    """The name of a Net, a NetDef, or a name."""
    if isinstance(netlike, Net):
        return netlike.Proto().name
    if isinstance(netlike, caffe2_pb2.NetDef):
        return netlike.name
    return netlike


def output_to_list(op_output):
    """An op's outputs as a list, whether it returned one BlobReference or several."""
    assert isinstance(op_output, (list, tuple, BlobReference)), type(op_output)
    return [op_output] if isinstance(op_output, BlobReference) else list(op_output)


def _add_net_to_dict(net_dict, net):
    """Record `net` under its name; False when the name was there (it must be the same net)."""
    name = get_net_name(net)
    if name in net_dict:
        assert net_dict[name] is None or net == net_dict[name], (
            "Different nets with same name: " + name)
        return False
    net_dict[name] = net if isinstance(net, Net) else None
    return True


class ExecutionStep:
    """A caffe2_pb2.ExecutionStep under construction, with the Net objects it runs."""

    _step_names_used = set()

    @staticmethod
    def _get_next_step_name(basename):
        name, index = basename, 1
        while name in ExecutionStep._step_names_used:
            name = "%s_%d" % (basename, index)
            index += 1
        ExecutionStep._step_names_used.add(name)
        return name

    def __init__(self, name, nets=None, num_iter=None):
        self._step = caffe2_pb2.ExecutionStep()
        self._step.name = name or ExecutionStep._get_next_step_name("step")
        self._net_dict = OrderedDict()
        self._is_used = False
        self._substeps = []
        if nets is not None:
            for net in [nets] if isinstance(nets, Net) else nets:
                if _add_net_to_dict(self._net_dict, net):
                    self._step.network.append(get_net_name(net))
        if num_iter is not None:
            self._step.num_iter = num_iter

    def get_net(self, name):
        return self._net_dict[name]

    def Name(self):
        return self._step.name

    def __str__(self):
        return self._step.name

    def _assert_can_mutate(self):
        # a step is copied into its parent when added: later edits would not reach the parent
        assert not self._is_used, "Cannot mutate a step that has already been added to a plan/step."

    def _notify_is_used(self):
        self._is_used = True

    def Proto(self):
        return self._step

    def HasNets(self):
        return len(self._step.network) > 0

    def HasSubsteps(self):
        return len(self._step.substep) > 0

    def Nets(self):
        return list(self._net_dict.values())

    def Substeps(self):
        return self._substeps

    def SetIter(self, num_iter):
        self._assert_can_mutate()
        self._step.num_iter = num_iter

    def SetCreateWorkspace(self, create_workspace):
        self._assert_can_mutate()
        self._step.create_workspace = create_workspace

    def SetNumConcurrentInstances(self, num_concurrent_instances):
        self._assert_can_mutate()
        self._step.num_concurrent_instances = num_concurrent_instances

    def SetOnlyOnce(self, only_once):
        self._assert_can_mutate()
        self._step.only_once = only_once

    def SetShouldStopBlob(self, should_stop_blob):
        assert isinstance(should_stop_blob, BlobReference), (
            "expects BlobReference here, got {}".format(type(should_stop_blob)))
        self._assert_can_mutate()
        self._step.should_stop_blob = str(should_stop_blob)

    def RunEveryMillis(self, interval):
        """Run this step every `interval` ms while its siblings run, and once after them."""
        self._step.run_every_ms = interval

    def SetReportNet(self, report_net, report_interval):
        """Deprecated in Caffe2 (RunEveryMillis replaces it)."""
        self._assert_can_mutate()
        _add_net_to_dict(self._net_dict, report_net)
        self._step.report_net = get_net_name(report_net)
        self._step.report_interval = report_interval

    def AddSubstep(self, substep):
        self._assert_can_mutate()
        assert not self.HasNets(), "Cannot have both network and substeps."
        if isinstance(substep, ExecutionStep):
            substep._notify_is_used()
            if not substep.HasNets() and not substep.HasSubsteps():
                return self  # an empty step does nothing: Caffe2 drops it
            for net in substep.Nets():
                _add_net_to_dict(self._net_dict, net)
            self._substeps.append(substep)
            proto = substep.Proto()
        else:
            proto = substep
        self._step.substep.add().CopyFrom(proto)
        return self

    def SetConcurrentSubsteps(self, concurrent_substeps):
        self._assert_can_mutate()
        assert not self.HasNets(), "Cannot have both network and substeps."
        self._step.concurrent_substeps = concurrent_substeps

    def AddNet(self, net):
        self._assert_can_mutate()
        assert not self.HasSubsteps(), "Cannot have both network and substeps."
        assert isinstance(net, Net)
        _add_net_to_dict(self._net_dict, net)
        self._step.network.append(get_net_name(net))
        return self

    def get_all_attributes(self, name):
        """Every attribute `name` of the nets this step and its children use."""
        return [attr for net in self._net_dict.values() for attr in net.get_attributes(name)]

    @classmethod
    def create_from_proto(cls, step_proto, net_obj_dict, net_proto_dict):
        """The ExecutionStep of a proto, recursively; nets come from `net_obj_dict` or are
        built (once) from `net_proto_dict`."""
        assert isinstance(step_proto, caffe2_pb2.ExecutionStep)
        assert bool(step_proto.network) != bool(step_proto.substep), (
            "step %r must have either nets or substeps" % step_proto.name)
        if step_proto.substep:
            children = [cls.create_from_proto(s, net_obj_dict, net_proto_dict)
                        for s in step_proto.substep]
        else:
            children = []
            for net_name in step_proto.network:
                if net_name not in net_obj_dict:
                    assert net_name in net_proto_dict, "plan has no net %r" % net_name
                    net_obj_dict[net_name] = Net(net_proto_dict[net_name])
                children.append(net_obj_dict[net_name])

        def field(name):
            return getattr(step_proto, name) if step_proto.HasField(name) else None

        stop = field("should_stop_blob")
        return execution_step(
            step_proto.name, children, num_iter=field("num_iter"),
            concurrent_substeps=field("concurrent_substeps"),
            should_stop_blob=BlobReference(stop) if stop is not None else None,
            only_once=field("only_once"), num_concurrent_instances=field("num_concurrent_instances"),
            create_workspace=field("create_workspace"), run_every_ms=field("run_every_ms"))


def add_nets_in_order(step, net_list):
    """Append to `net_list` the names of the nets `step` uses, substeps first."""
    proto = step.Proto()
    for substep in step.Substeps():
        add_nets_in_order(substep, net_list)
    for net in proto.network:
        if net not in net_list:
            net_list.append(net)
    if proto.report_net and proto.report_net not in net_list:
        net_list.append(proto.report_net)


class Plan:
    """A caffe2_pb2.PlanDef: its steps, and (in order of use) every net they name."""

    def __init__(self, name_or_step):
        self._plan = caffe2_pb2.PlanDef()
        self._net_dict = OrderedDict()
        self._steps = []
        if isinstance(name_or_step, ExecutionStep):
            self._plan.name = name_or_step.Name()
            self.AddStep(name_or_step)
        elif isinstance(name_or_step, str):
            self._plan.name = name_or_step
        else:
            raise ValueError("name_or_step must be a string or ExecutionStep")

    def __str__(self):
        return self._plan.name

    def Proto(self):
        return self._plan

    def AddNets(self, nets):
        for net in nets:
            if _add_net_to_dict(self._net_dict, net):
                assert isinstance(net, Net)
                self._plan.network.add().CopyFrom(net.Proto())

    def Nets(self):
        return list(self._net_dict.values())

    def AddStep(self, step):
        assert isinstance(step, ExecutionStep)
        step._notify_is_used()
        if not step.HasNets() and not step.HasSubsteps():
            return
        self._plan.execution_step.add().CopyFrom(step.Proto())
        self._steps.append(step)
        net_list = []
        add_nets_in_order(step, net_list)
        self.AddNets([step.get_net(n) for n in net_list])

    def Steps(self):
        return self._steps

    def get_all_attributes(self, name):
        return [attr for net in self._net_dict.values() for attr in net.get_attributes(name)]

    @classmethod
    def create_from_proto(cls, plan_proto):
        assert isinstance(plan_proto, caffe2_pb2.PlanDef)
        plan = Plan(plan_proto.name)
        plan._plan.CopyFrom(plan_proto)
        del plan._plan.network[:]
        del plan._plan.execution_step[:]
        net_obj_dict, net_proto_dict = {}, {}
        for net_proto in plan_proto.network:
            assert net_proto.name not in net_proto_dict, "two nets named %r" % net_proto.name
            net_proto_dict[net_proto.name] = net_proto
        for step_proto in plan_proto.execution_step:
            plan.AddStep(ExecutionStep.create_from_proto(step_proto, net_obj_dict, net_proto_dict))
        return plan


def _is_net_builder(obj):
    # net_builder.NetBuilder (Caffe2's own module) without importing it: it imports core
    return any(c.__name__ == "NetBuilder" for c in type(obj).__mro__) and hasattr(obj, "_stop_blob")


def to_execution_step(step_or_nets, default_name=None):
    """An ExecutionStep as is; a NetBuilder (with its stop blob), nets or steps wrapped in one."""
    if isinstance(step_or_nets, ExecutionStep):
        return step_or_nets
    stop_blob = None
    if not default_name and hasattr(step_or_nets, "name"):
        default_name = step_or_nets.name
    if _is_net_builder(step_or_nets):
        stop_blob = step_or_nets._stop_blob
        step_or_nets = step_or_nets.get()
    return execution_step(default_name, step_or_nets, should_stop_blob=stop_blob)


def execution_step(default_name, steps_or_nets, num_iter=None, report_net=None,
                   report_interval=None, concurrent_substeps=None, should_stop_blob=None,
                   only_once=None, num_concurrent_instances=None, create_workspace=False,
                   run_every_ms=None):
    """An ExecutionStep over None, a Net, an ExecutionStep, or a list of nets or of steps.

    should_stop_blob (a scalar bool blob, checked after every net / substep) and num_iter
    exclude each other; with neither the step runs once."""
    assert should_stop_blob is None or num_iter is None, (
        "Cannot set both should_stop_blob and num_iter.")
    if should_stop_blob is None and num_iter is None:
        num_iter = 1
    step = ExecutionStep(default_name)
    if should_stop_blob is not None:
        step.SetShouldStopBlob(should_stop_blob)
    if num_iter is not None:
        step.SetIter(num_iter)
    if only_once is not None:
        step.SetOnlyOnce(only_once)
    if concurrent_substeps is not None:
        step.SetConcurrentSubsteps(concurrent_substeps)
    if report_net is not None:
        assert report_interval is not None
        step.SetReportNet(report_net, report_interval)
    if num_concurrent_instances is not None:
        step.SetNumConcurrentInstances(num_concurrent_instances)
    if create_workspace:
        step.SetCreateWorkspace(True)
    if run_every_ms:
        step.RunEveryMillis(run_every_ms)
    if isinstance(steps_or_nets, ExecutionStep):
        step.AddSubstep(steps_or_nets)
    elif isinstance(steps_or_nets, Net):
        step.AddNet(steps_or_nets)
    elif isinstance(steps_or_nets, list):
        if all(isinstance(x, Net) for x in steps_or_nets):
            for x in steps_or_nets:
                step.AddNet(x)
        else:
            for x in steps_or_nets:
                step.AddSubstep(to_execution_step(x))
    elif steps_or_nets:
        raise ValueError("steps_or_nets must be a step, a net, or a list of nets or steps.")
    return step


def scoped_execution_step(name, *args, **kwargs):
    """execution_step with the step name in the current NameScope."""
    return execution_step(ScopedName(name) if name else name, *args, **kwargs)
