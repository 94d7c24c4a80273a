"""Running a PlanDef (workspace.RunPlan): Caffe2's plan executor on the project's workspaces.

    PlanDef ──► each ExecutionStep run in order; a step first creates its nets in its workspace
                (once; outputs made as empty blobs, as Caffe2's net instantiation does, so
                later nets may read them), then:
                  repeat num_iter times (once when unset; until should_stop_blob when only that
                  is set): run its nets, or its substeps, checking should_stop_blob after each

Concurrency is not reproduced: `concurrent_substeps` run one after another, a step's
`num_concurrent_instances` run one after another, and `run_every_ms` / report nets run once
after their siblings (Caffe2 guarantees that last run). Plans whose concurrent substeps wait on
each other (blocking queues) would deadlock here; the ones that only share blobs keep their
meaning. `create_workspace` runs the step in a child workspace: it reads and writes the parent's
existing blobs, and the blobs it creates vanish with it.
"""
import torch

from food101.caffe2.child_workspace import child_workspace
from food101.caffe2.errors import Caffe2Error
from food101.caffe2.executor import PreparedNet


def create_net(store, netdef, overwrite=False):
    """Create `netdef` in `store` as Caffe2 instantiates a net: its op outputs exist (empty)
    afterwards, inputs that neither the workspace nor an earlier op provide are an error."""
    if netdef.name in store.nets and not overwrite:
        return store.nets[netdef.name]
    copy = type(netdef)()
    copy.CopyFrom(netdef)
    prepared = PreparedNet(copy, store)
    for op in copy.op:
        for name in op.output:
            if name not in store.blobs:
                store.blobs[name] = torch.empty(0)
    store.nets[netdef.name] = prepared
    return prepared


class _Run:
    """One run of a plan: the nets it defines, by name."""

    def __init__(self, plan):
        self.netdefs = {net.name: net for net in plan.network}

    def net(self, store, name):
        prepared = store.nets.get(name)
        if prepared is None:
            if name not in self.netdefs:
                raise Caffe2Error("plan step names net %r, which the plan does not define "
                                  "(nets: %s)" % (name, ", ".join(sorted(self.netdefs)) or "none"))
            prepared = create_net(store, self.netdefs[name])
        return prepared

    def should_stop(self, store, step):
        if not step.HasField("should_stop_blob"):
            return False
        value = store.blobs.get(step.should_stop_blob)
        if not isinstance(value, torch.Tensor) or value.numel() == 0:
            return True  # as Caffe2: a stop blob that was never written ends the step
        return bool(value.reshape(-1)[0])

    def run_step(self, store, step):
        if bool(step.network) and bool(step.substep):
            raise Caffe2Error("execution step %r has both nets and substeps" % step.name)
        if step.create_workspace:
            store = child_workspace(store)
        for name in list(step.network) + ([step.report_net] if step.report_net else []):
            self.net(store, name)  # created before the step runs, in the step's workspace
        if step.HasField("num_iter"):
            iterations = range(step.num_iter)
        elif step.HasField("should_stop_blob"):
            iterations = _forever()
        else:
            iterations = range(1)
        for iteration in iterations:
            if self._run_iteration(store, step, iteration):
                break
        if step.report_net:
            self.net(store, step.report_net).run()

    def _run_iteration(self, store, step, iteration):
        """One iteration; True when should_stop_blob says to stop."""
        for name in step.network:
            self.net(store, name).run()
            if self.should_stop(store, step):
                return True
        if step.concurrent_substeps:
            # run one after another; periodic siblings once after the others
            ordered = [s for s in step.substep if not s.run_every_ms]
            ordered += [s for s in step.substep if s.run_every_ms]
        else:
            ordered = list(step.substep)
        for substep in ordered:
            if substep.only_once and iteration > 0:
                continue
            instances = substep.num_concurrent_instances if step.concurrent_substeps else 1
            for _ in range(max(instances, 1)):
                self.run_step(store, substep)
            if not step.concurrent_substeps and self.should_stop(store, step):
                return True
        return bool(step.concurrent_substeps) and self.should_stop(store, step)


def _forever():
    i = 0
    while True:
        yield i
        i += 1


def run_plan(plan, store):
    """Run a caffe2_pb2.PlanDef against the workspace `store` (a workspace.Workspace)."""
    run = _Run(plan)
    for step in plan.execution_step:
        run.run_step(store, step)
    return True
