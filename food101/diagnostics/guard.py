"""The divergence guard: catch a NaN/Inf or spiking loss, say where it came from, recover.

    before_iteration(it, ws, batch, keys)        remember the state the iteration starts from
            │                                     (references to the in-place state blobs:
            ▼                                      params, momenta, Iter, BN statistics)
        RunNet (the trainer)
            │
    after_iteration(it, loss, ws) ── loss finite and < spike_factor x running average ──► "continue"
            │ bad                                 (every good_state_interval iterations the
            ▼                                      state is kept as the rollback target)
    DivergenceReport: the iteration, the batch's LMDB keys, the records that look guilty (NaN or
    extreme pixels, a huge per-sample loss) and the first blobs that went non-finite, found by
    re-running the iteration op by op from its starting state in a private workspace; written as
    JSON, with a reproducer file (the starting state + the batch) for `reproduce()`.
            │
            ▼ policy
    stop      -> restore the state the iteration started from -> "stop"
    skip      -> restore the starting state (the update never happened), drop the batch -> "skip"
    rollback  -> restore the last good state, multiply every LearningRate base_lr by lr_scale
                 -> "rollback": the workspace holds the state after iteration
                 `resume_iteration`; the trainer continues with resume_iteration + 1 and new
                 batches (the quarantined records are skipped when they come round again)
    report    -> log only -> "continue"

Snapshots cost nothing on the device: ops never write a blob in place (the executor rebinds the
name), so keeping a reference keeps the value. If a tensor's version counter shows an in-place
write anyway, the guard switches to copying the state blobs.

A divergence that recurs at the same iteration in every run (story: GoogLeNet at iteration
119,040) is the data, not the optimizer: the same record arrives at the same position.
"""
import collections
import enum
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from typing import List, Optional

import torch

from food101.caffe2.executor import PreparedNet
from food101.caffe2.ops.learning_rate import scale_base_lr
from food101.caffe2.proto import caffe2_pb2
from food101.caffe2.utils import ArgsToDict
from food101.caffe2.workspace import Workspace
from food101.checkpoint import load_checkpoint
from food101.data.records import key_text
from food101.fileio import write_text
from food101.diagnostics import netinfo

log = logging.getLogger("food101.diagnostics")

REPRODUCER_FORMAT = "food101-divergence-reproducer/1"
POLICIES = ("stop", "skip", "rollback", "report")


class Action(enum.StrEnum):
    """What the training loop does after the guard judged an iteration (a str, so it also
    compares equal to "continue", "skip", ... and reads so in JSON)."""
    CONTINUE = "continue"   # go on
    SKIP = "skip"           # the update was undone: continue after resume_iteration, new batch
    ROLLBACK = "rollback"   # an earlier good state is back: continue after resume_iteration
    STOP = "stop"           # stop training; the workspace holds the state to save


def _workspace_object(workspace):
    if hasattr(workspace, "current"):   # the workspace module (it has `blobs` too now)
        return workspace.current()
    if hasattr(workspace, "blobs") and hasattr(workspace, "nets"):
        return workspace
    raise TypeError("expected a food101.caffe2 Workspace or the workspace module, got %r"
                    % type(workspace).__name__)


def _nonfinite_count(value):
    if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.numel() == 0:
        return 0
    return int((~torch.isfinite(value.detach())).sum())


# ------------------------------------------------------------------------------------------
# State snapshots
# ------------------------------------------------------------------------------------------
class StateSnapshot:
    """The values of some blobs at one iteration, restorable later."""

    def __init__(self, iteration, blobs, names, clone=False, rng=None):
        self.iteration = iteration
        self.values = {}
        self.versions = {}
        for n in names:
            v = blobs.get(n)
            if isinstance(v, torch.Tensor):
                self.values[n] = v.detach().clone() if clone else v
                self.versions[n] = self.values[n]._version
            elif v is not None:
                self.values[n] = v
        self.cloned = clone
        self.rng = rng

    def intact(self):
        """False if a kept tensor was written in place since (then it no longer holds the value)."""
        return all(self.values[n]._version == ver for n, ver in self.versions.items())

    def restore(self, blobs, workspace=None):
        for n, v in self.values.items():
            blobs[n] = v.clone() if isinstance(v, torch.Tensor) and self.cloned else v
        if self.rng and workspace is not None and hasattr(workspace, "set_rng_state"):
            workspace.set_rng_state(self.rng)


# ------------------------------------------------------------------------------------------
# Locating the first non-finite blobs by re-running an iteration
# ------------------------------------------------------------------------------------------
def _describe_step(netdef, index):
    op = netdef.op[index]
    net, local = netinfo.locate(netdef.name, index)
    return {"op_index": local, "op_type": op.type, "op_name": op.name or None, "net": net}


def replay_iteration(netdef, start_blobs, rng=None, max_blobs=8):
    """Re-run one iteration of `netdef` from `start_blobs` ({name: value}, not modified) in a
    private workspace, op by op through the forward pass, then whole (gradients, updates).

    Returns a dict:
      first_nonfinite: [{blob, stage, op_index, op_type, op_name, count}] in the order they went
                       non-finite: inputs (read from the workspace), forward ops in op order,
                       gradients in backward order, updated blobs
      origin:          the first op whose inputs were all finite and whose output was not
      loss:            {loss blob: value}
      blobs:           the private workspace's blobs after the full run
      forward_blobs:   the blobs after the forward pass
      error:           an exception message if an op failed"""
    netdef = netinfo.as_netdef(netdef)
    first, origin, error = [], None, None

    def note(name, stage, index, count):
        if len(first) < max_blobs and all(f["blob"] != name or f["stage"] != stage for f in first):
            entry = {"blob": name, "stage": stage, "count": count}
            entry.update(_describe_step(netdef, index) if index is not None else
                         {"op_index": None, "op_type": None, "op_name": None, "net": None})
            first.append(entry)

    for name in netinfo.read_before_written(netdef):
        count = _nonfinite_count(start_blobs.get(name))
        if count:
            note(name, "input", None, count)

    ws = Workspace("diagnostics-replay")
    ws.blobs.update(start_blobs)
    if rng:
        ws.set_rng_state(rng)
    net = PreparedNet(netdef, ws, check_inputs=False)

    def observe(index, inputs, outputs):
        nonlocal origin
        inputs_finite = all(_nonfinite_count(v) == 0 for v in inputs)
        for name, value in zip(netdef.op[index].output, outputs):
            count = _nonfinite_count(value)
            if count:
                note(name, "forward", index, count)
                if origin is None and inputs_finite:
                    origin = dict(_describe_step(netdef, index), blob=name,
                                  inputs=list(netdef.op[index].input))

    try:
        net.run_steps(0, net.forward_end, observe=observe)
    except Exception as e:  # report, don't raise: this runs while handling a failure
        error = str(e)
    forward_blobs = dict(ws.blobs)
    losses = _loss_blobs(netdef)
    final_blobs = forward_blobs
    if error is None and net.backward is not None:
        ws2 = Workspace("diagnostics-replay-full")
        ws2.blobs.update(start_blobs)
        if rng:
            ws2.set_rng_state(rng)
        try:
            PreparedNet(netdef, ws2, check_inputs=False).run()
            final_blobs = ws2.blobs
        except Exception as e:
            error = str(e)
        bw_op = netdef.op[net.backward.index]
        for name in reversed(list(bw_op.output)):  # backward order: from the loss back
            count = _nonfinite_count(final_blobs.get(name))
            if count:
                note(name, "gradient", net.backward.index, count)
        targets, _aux = netinfo.update_targets(netdef)
        for name, (index, _op) in sorted(targets.items(), key=lambda kv: kv[1][0]):
            count = _nonfinite_count(final_blobs.get(name))
            if count:
                note(name, "update", index, count)
    loss = {}
    for name in losses:
        value = forward_blobs.get(name)
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            loss[name] = float(value.reshape(-1)[0])
    return {"first_nonfinite": first, "origin": origin, "loss": loss, "blobs": final_blobs,
            "forward_blobs": forward_blobs, "error": error}


def _loss_blobs(netdef):
    for op in netdef.op:
        if op.type == netinfo.GRADIENT_OP:
            n = int(ArgsToDict(op.arg).get("num_losses", 1))
            return list(op.input[:n])
    return [op.output[0] for op in netdef.op if op.type == "AveragedLoss" and op.output]


def suspect_samples(data, keys=None, per_sample_loss=None, extreme_factor=50.0, loss_factor=5.0):
    """Samples of a batch that look guilty: non-finite pixels, values far beyond the batch's
    typical magnitude, a non-finite or outsized per-sample loss. [{index, key, reasons}]; the
    key is text (LMDB keys are bytes: see food101.data.records.key_text)."""
    out = {}

    def add(i, reason):
        entry = out.setdefault(i, {"index": i, "key": key_text(keys[i]) if keys is not None
                                   and i < len(keys) else None, "reasons": []})
        entry["reasons"].append(reason)

    if isinstance(data, torch.Tensor) or data is not None:
        x = data if isinstance(data, torch.Tensor) else torch.as_tensor(data)
        if x.dim() >= 1 and x.shape[0] > 0:
            flat = x.detach().reshape(x.shape[0], -1)
            if flat.is_floating_point():
                bad = (~torch.isfinite(flat)).sum(dim=1).tolist()
                for i, count in enumerate(bad):
                    if count:
                        nan = int(torch.isnan(flat[i]).sum())
                        add(i, "%d non-finite values in the image (%d NaN, %d Inf)"
                            % (count, nan, count - nan))
                mag = torch.where(torch.isfinite(flat), flat.abs(), torch.zeros_like(flat))
                peak = mag.float().amax(dim=1)
                typical = float(peak.median())
                for i, p in enumerate(peak.tolist()):
                    if typical > 0 and p > extreme_factor * typical:
                        add(i, "extreme values: max |x| = %.3g, %.3g times the batch's median %.3g"
                            % (p, p / typical, typical))
                    elif typical == 0 and p > 1e6:
                        add(i, "extreme values: max |x| = %.3g" % p)
    if isinstance(per_sample_loss, torch.Tensor) and per_sample_loss.numel() > 1 and not out:
        # only when the images do not already show the culprit
        lo = per_sample_loss.detach().float().reshape(-1)
        finite = lo[torch.isfinite(lo)]
        typical = float(finite.median()) if finite.numel() else 0.0
        for i, v in enumerate(lo.tolist()):
            if not math.isfinite(v):
                add(i, "its loss is %r" % v)
            elif typical > 0 and v > loss_factor * typical and v > 1.0:
                add(i, "its loss %.3g is %.0fx the batch's median %.3g" % (v, v / typical, typical))
    return [out[i] for i in sorted(out)]


# ------------------------------------------------------------------------------------------
# The report
# ------------------------------------------------------------------------------------------
@dataclass
class DivergenceReport:
    iteration: int
    reason: str                      # "nonfinite_loss" | "loss_spike"
    loss: float
    running_average: Optional[float]
    spike_factor: float
    policy: str
    action: str = "stop"
    keys: List[str] = field(default_factory=list)
    suspects: List[dict] = field(default_factory=list)
    first_nonfinite: List[dict] = field(default_factory=list)
    origin: Optional[dict] = None
    learning_rates: dict = field(default_factory=dict)
    resume_iteration: Optional[int] = None
    lr_scaled_by: Optional[float] = None
    replay_error: Optional[str] = None
    stopped_by: Optional[str] = None       # why a recovering policy stopped after all
    report_path: Optional[str] = None
    reproducer_path: Optional[str] = None

    @property
    def suspect_keys(self):
        return [key_text(s["key"]) for s in self.suspects if s.get("key") is not None]

    def to_dict(self):
        """JSON-ready: keys as text, non-finite floats as strings."""
        d = asdict(self)
        d["keys"] = [key_text(k) for k in d["keys"]]
        for s in d["suspects"]:
            s["key"] = key_text(s.get("key"))
        for k in ("loss", "running_average"):
            if isinstance(d[k], float) and not math.isfinite(d[k]):
                d[k] = str(d[k])
        return d

    def save(self, path):
        """Write the report as JSON, atomically: a reader sees the whole report or none."""
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        self.report_path = path
        write_text(path, json.dumps(self.to_dict(), indent=1, default=_json_fallback))
        return path

    def __str__(self):
        lines = []
        if self.reason == "nonfinite_loss":
            lines.append("Divergence at iteration %d: the loss is %r (running average %s)."
                         % (self.iteration, self.loss, _g(self.running_average)))
        else:
            lines.append("Divergence at iteration %d: loss spike %.4g, %.1fx the running average "
                         "%.4g (threshold %gx)." % (self.iteration, self.loss,
                                                      self.loss / self.running_average,
                                                      self.running_average, self.spike_factor))
        if self.keys:
            shown = ", ".join(key_text(k) for k in self.keys[:16]) + (" ..." if len(self.keys) > 16
                                                                      else "")
            lines.append("Batch LMDB keys: %s" % shown)
        if self.suspects:
            lines.append("Suspect records:")
            for s in self.suspects[:8]:
                lines.append("  %s (batch index %d): %s" % (
                    key_text(s["key"]) if s.get("key") is not None else "<no key>", s["index"],
                    "; ".join(s["reasons"])))
        if self.first_nonfinite:
            parts = []
            for f in self.first_nonfinite:
                if f["stage"] == "input":
                    parts.append("%r (input read from the workspace)" % f["blob"])
                else:
                    parts.append("%r (%s, op #%d %s of net %r)" % (
                        f["blob"], f["stage"], f["op_index"], f["op_type"], f.get("net")))
            lines.append("First non-finite blobs: " + "; ".join(parts))
        if self.first_nonfinite and self.first_nonfinite[0]["stage"] == "input":
            lines.append("The iteration started with non-finite %r: %s" % (
                self.first_nonfinite[0]["blob"],
                "the batch itself carries NaN/Inf (see the suspect records)"
                if any("non-finite values" in r for s in self.suspects for r in s["reasons"])
                else "an earlier update wrote it (a NaN/Inf learning rate or gradient one "
                     "iteration before; divergence_policy rollback returns to a good state)"))
        if self.origin:
            lines.append("It starts at op #%d %s of net %r, whose inputs %s are finite and whose "
                         "output %r is not." % (self.origin["op_index"], self.origin["op_type"],
                                                self.origin.get("net"), self.origin["inputs"],
                                                self.origin["blob"]))
        if self.learning_rates:
            lines.append("Learning rate: " + ", ".join("%s = %s" % (k, _g(v))
                                                       for k, v in self.learning_rates.items()))
        if self.suspects:
            lines.append("A divergence that recurs at the same iteration in every run comes from "
                         "the data: check these records (tools/check_lmdb.py) and remove them.")
        if self.action == "rollback":
            lines.append("Action: rolled back to iteration %s, every base_lr multiplied by %g."
                         % (self.resume_iteration, self.lr_scaled_by))
        elif self.action == "skip":
            lines.append("Action: iteration undone and this batch skipped.")
        elif self.action == "stop":
            lines.append("Action: training stopped (policy %r)." % self.policy)
        else:
            lines.append("Action: none (policy %r)." % self.policy)
        if self.reproducer_path:
            lines.append("Re-run exactly this iteration: food101.diagnostics.reproduce(%r)"
                         % self.reproducer_path)
        if self.replay_error:
            lines.append("(the replay stopped: %s)" % self.replay_error)
        return "\n".join(lines)


def _g(v):
    return "%.4g" % v if isinstance(v, float) and math.isfinite(v) else repr(v)


# ------------------------------------------------------------------------------------------
# Learning-rate scaling
# ------------------------------------------------------------------------------------------
def scale_learning_rate(workspace, net, factor):
    """Multiply base_lr of every LearningRate op of the created net(s) `net` (a name, Net,
    NetDef or a list of them) by `factor`, in place: the prepared net's arguments and the NetDef
    copy it runs (the caller's NetDef objects are not touched). Returns
    [(net name, op index, old base_lr, new base_lr)]."""
    ws = _workspace_object(workspace)
    if isinstance(net, str):
        names = [net]
    elif isinstance(net, (list, tuple)) and all(isinstance(n, str) for n in net):
        names = list(net)
    else:
        names = netinfo.net_names(net)
    changed = []
    for name in names:
        prepared = ws.nets.get(name)
        if prepared is None:
            log.warning("scale_learning_rate: no net %r was created in the workspace; its "
                        "learning rate is unchanged", name)
            continue
        for index, old, new in scale_base_lr(prepared.netdef, factor):
            prepared.set_op_arguments(index, base_lr=new)
            changed.append((name, index, old, new))
    return changed


def _current_lrs(netdef, blobs):
    out = {}
    for _i, op in netinfo.learning_rate_ops(netdef):
        value = blobs.get(op.output[0]) if op.output else None
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            out[op.output[0]] = float(value.reshape(-1)[0])
    return out


# ------------------------------------------------------------------------------------------
# The guard
# ------------------------------------------------------------------------------------------
class DivergenceGuard:
    """Decides, after each iteration, whether training diverged and what to do.

        guard = DivergenceGuard(model.net, policy="rollback", spike_factor=5, report_dir=out)
        for it in ...:
            guard.before_iteration(it, ws, data=batch, keys=keys)   # after FeedBlob is fine too
            workspace.RunNet(model.net)
            action = guard.after_iteration(it, loss, ws)            # continue|skip|rollback|stop
            if action in ("skip", "rollback"): it = guard.resume_iteration  # next: it + 1
    """

    def __init__(self, train_netdef, policy="stop", spike_factor=5.0, window=50, warmup=20,
                 lr_scale=0.5, good_state_interval=100, max_recoveries=5, report_dir=None,
                 log_reports=True):
        if policy not in POLICIES:
            raise ValueError("divergence policy must be one of %s, got %r" % (", ".join(POLICIES),
                                                                             policy))
        self.net = netinfo.as_netdef(train_netdef)
        self.net_names = netinfo.net_names(train_netdef)
        self.policy = policy
        self.spike_factor = float(spike_factor)
        self.warmup = int(warmup)
        self.lr_scale = float(lr_scale)
        self.good_state_interval = max(1, int(good_state_interval))
        self.max_recoveries = int(max_recoveries)
        self.report_dir = report_dir
        self.log_reports = log_reports
        self.history = collections.deque(maxlen=max(1, int(window)))
        self.state_names = netinfo.state_blobs(self.net)
        self.per_sample_loss = netinfo.per_sample_loss(self.net)
        self.reports = []
        self.recoveries = 0
        self.lr_factor = 1.0  # product of the lr scalings applied by rollbacks
        self.resume_iteration = None
        self.quarantined_keys = set()
        self._clone = False
        self._start = None      # StateSnapshot before the current iteration
        self._batch = None      # (data, keys) of the current iteration
        self._pending_good = None
        self._good = None

    # -------------------------------------------------------------- checkpointed state
    def state_dict(self):
        """What changes the rest of a run and must survive a resume: the lr scaling of the
        rollbacks so far, the recovery count (max_recoveries), the quarantined records and the
        loss window the spike test compares with. The in-memory good state is not kept: a
        resumed run's first rollback target is the state it resumed from."""
        return {"lr_factor": self.lr_factor, "recoveries": self.recoveries,
                "quarantined_keys": sorted(self.quarantined_keys),
                "history": list(self.history)}

    def load_state_dict(self, state, workspace):
        """Put a checkpoint's guard state back; the created nets' LearningRate ops (built anew
        with the config's base_lr) are scaled by the saved lr_factor."""
        factor = float(state.get("lr_factor", 1.0))
        if factor != 1.0:
            scale_learning_rate(workspace, self.net_names, factor)
            scale_base_lr(self.net, factor)
        self.lr_factor = factor
        self.recoveries = int(state.get("recoveries", 0))
        self.quarantined_keys = set(state.get("quarantined_keys", ()))
        self.history.clear()
        self.history.extend(float(v) for v in state.get("history", ()))

    # -------------------------------------------------------------- per iteration
    def before_iteration(self, it, workspace, data=None, keys=None):
        """Keep the state the iteration starts from (and its batch) for skip and the report.
        Returns "skip" when the batch holds a record that caused a divergence before."""
        ws = _workspace_object(workspace)
        self._start = StateSnapshot(it, ws.blobs, self.state_names, clone=self._clone,
                                    rng=ws.rng_state())
        self._batch = (data, list(keys) if keys is not None else None)
        # quarantined_keys holds text (key_text): the batch's bytes keys are compared as text
        if keys is not None and self.quarantined_keys.intersection(map(key_text, keys)):
            return Action.SKIP
        return Action.CONTINUE

    def after_iteration(self, it, loss, workspace):
        ws = _workspace_object(workspace)
        self.resume_iteration = None
        if self._start is not None and not self._clone and not self._start.intact():
            log.info("an op wrote a state blob in place; the divergence guard now copies the "
                     "training state instead of keeping references")
            self._clone = True
            self._pending_good = self._good = None
        if loss is None:
            return Action.CONTINUE  # nothing to judge (the caller has no loss for this iteration)
        loss = float(loss)
        reason = None
        average = sum(self.history) / len(self.history) if self.history else None
        if not math.isfinite(loss):
            reason = "nonfinite_loss"
        elif (self.spike_factor > 0 and len(self.history) >= self.warmup and average
              and loss > self.spike_factor * average):
            reason = "loss_spike"
        if reason is None:
            self.history.append(loss)
            self._keep_good_state(it, ws)
            return Action.CONTINUE
        report = self.investigate(it, loss, reason, average, ws)
        action = self._act(report, ws)
        report.action = action
        self._write(report)
        if self.log_reports:
            log.error("%s", report)
        return action

    def _keep_good_state(self, it, ws):
        # A state becomes "good" once the iteration after it was healthy too: an update with an
        # outsized gradient shows in the loss only one iteration later.
        if self._pending_good is not None and self._pending_good.iteration < it:
            if self._pending_good.intact() or self._pending_good.cloned:
                self._good = self._pending_good
            self._pending_good = None
        if self._good is None or it - self._good.iteration >= self.good_state_interval:
            if self._pending_good is None:
                self._pending_good = StateSnapshot(it, ws.blobs, self.state_names,
                                                   clone=self._clone, rng=ws.rng_state())

    # -------------------------------------------------------------- investigation
    def start_blobs(self, ws):
        """The blobs as they were when the current iteration started."""
        blobs = dict(ws.blobs)
        if self._start is not None:
            blobs.update(self._start.values)
        return blobs

    def investigate(self, it, loss, reason, average, ws):
        data, keys = self._batch if self._batch else (None, None)
        replay = replay_iteration(self.net, self.start_blobs(ws),
                                  rng=self._start.rng if self._start else None)
        per_sample = replay["forward_blobs"].get(self.per_sample_loss) if self.per_sample_loss \
            else None
        if data is None:
            # no batch was handed over: look at what the net read as its data
            first_input = netinfo.first_conv_input(self.net)
            data = ws.blobs.get(first_input)
        report = DivergenceReport(
            iteration=it, reason=reason, loss=loss, running_average=average,
            spike_factor=self.spike_factor, policy=self.policy, keys=[key_text(k) for k in keys or []],
            suspects=suspect_samples(data, keys, per_sample),
            first_nonfinite=[{k: v for k, v in f.items()} for f in replay["first_nonfinite"]],
            origin=replay["origin"], learning_rates=_current_lrs(self.net, ws.blobs),
            replay_error=replay["error"])
        if self.report_dir:
            report.reproducer_path = self._save_reproducer(it, ws, keys, loss)
        return report

    def _save_reproducer(self, it, ws, keys, loss):
        path = os.path.join(self.report_dir, self._report_name(it) + ".pt")
        os.makedirs(self.report_dir, exist_ok=True)
        start = self.start_blobs(ws)
        needed = netinfo.read_before_written(self.net)
        blobs, devices = {}, {}
        for n in needed:
            v = start.get(n)
            if isinstance(v, torch.Tensor):
                blobs[n] = v.detach().cpu()
                devices[n] = str(v.device)
            elif v is not None:
                blobs[n] = v  # mutexes, strings: pickled as they are
        torch.save({"format": REPRODUCER_FORMAT, "iteration": int(it),
                    "netdef": self.net.SerializeToString(), "blobs": blobs, "devices": devices,
                    "rng": self._start.rng if self._start else None,
                    "keys": [key_text(k) for k in keys or []], "loss": loss}, path)
        return path

    def _write(self, report):
        self.reports.append(report)
        if self.report_dir:
            report.save(os.path.join(self.report_dir, self._report_name(report.iteration) + ".json"))

    def _report_name(self, it):
        """divergence_it<N>; a second divergence at the same iteration number (after a skip or
        a rollback the count repeats) gets _2, _3, ... rather than overwriting the first."""
        earlier = sum(1 for r in self.reports if r.iteration == it and r.report_path)
        return "divergence_it%d" % it + ("_%d" % (earlier + 1) if earlier else "")

    # -------------------------------------------------------------- recovery
    def _act(self, report, ws):
        self.quarantined_keys.update(report.suspect_keys)
        if self.policy == "report":
            return Action.CONTINUE
        if self.policy == "stop":
            return self._stop(report, ws)
        self.recoveries += 1
        if self.recoveries > self.max_recoveries:
            log.error("divergence guard: %d recoveries already (max_recoveries=%d); stopping",
                      self.recoveries - 1, self.max_recoveries)
            report.stopped_by = "max_recoveries (%d) exceeded" % self.max_recoveries
            return self._stop(report, ws)
        if self.policy == "skip":
            self._start.restore(ws.blobs, ws)
            report.resume_iteration = self.resume_iteration = report.iteration - 1
            return Action.SKIP
        target = self._good or self._start
        target.restore(ws.blobs, ws)
        report.resume_iteration = target.iteration if target is self._good else target.iteration - 1
        self.resume_iteration = report.resume_iteration
        scale_learning_rate(ws, self.net_names, self.lr_scale)
        scale_base_lr(self.net, self.lr_scale)  # our copy tells the truth too
        self.lr_factor *= self.lr_scale
        report.lr_scaled_by = self.lr_scale
        self._pending_good = None
        return Action.ROLLBACK

    def _stop(self, report, ws):
        """Keep the state the bad iteration started from (the trainer saves it): "stop" always
        comes with resume_iteration, the last iteration whose result the workspace holds."""
        if self._start is not None:
            self._start.restore(ws.blobs, ws)
        report.resume_iteration = self.resume_iteration = report.iteration - 1
        return Action.STOP


def _json_fallback(value):
    """What json cannot write by itself: bytes keys as text, numbers and tensors as numbers."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return key_text(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if hasattr(value, "item") and callable(value.item):       # numpy scalars
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return repr(value)


# ------------------------------------------------------------------------------------------
# Re-running one iteration later
# ------------------------------------------------------------------------------------------
@dataclass
class ReplayResult:
    iteration: Optional[int]
    loss: dict
    first_nonfinite: list
    origin: Optional[dict]
    suspects: list
    error: Optional[str]
    blobs: dict = field(repr=False, default_factory=dict)

    def __str__(self):
        lines = ["Replay of iteration %s: %s" % (self.iteration, ", ".join(
            "%s = %s" % (k, _g(v)) for k, v in self.loss.items()) or "no loss")]
        for f in self.first_nonfinite:
            lines.append("  non-finite: %r (%s%s)" % (
                f["blob"], f["stage"], ", op #%d %s" % (f["op_index"], f["op_type"])
                if f["op_index"] is not None else ""))
        for s in self.suspects:
            lines.append("  suspect %s: %s" % (s.get("key"), "; ".join(s["reasons"])))
        if self.error:
            lines.append("  error: %s" % self.error)
        return "\n".join(lines)


def reproduce(checkpoint_path, iteration=None, netdef=None, feeds=None, keys=None, device=None):
    """Re-run exactly one training iteration and report where it goes non-finite.

    checkpoint_path: a reproducer written by the guard (divergence_it<N>.pt: the state the
    iteration started from, its batch, its RNG state and the net), or a trainer checkpoint
    (<prefix>_iter_<N>.ckpt) taken right before the iteration, with `netdef` (the training
    NetDef) and `feeds` ({blob: array}, the iteration's batch) given.
    device: a torch device for every blob; by default a reproducer puts each blob back on the
    device it was on, and a checkpoint's blobs go to the CUDA device the net names (as the
    trainer restores them), else stay on the CPU."""
    payload = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    devices = {}
    if isinstance(payload, dict) and payload.get("format") == REPRODUCER_FORMAT:
        if iteration is not None and int(iteration) != payload["iteration"]:
            raise ValueError("%s re-runs iteration %d, not %d" % (
                checkpoint_path, payload["iteration"], iteration))
        net = caffe2_pb2.NetDef()
        if netdef is None:
            net.ParseFromString(payload["netdef"])
        else:
            net.CopyFrom(netinfo.as_netdef(netdef))
        blobs, rng = dict(payload["blobs"]), payload.get("rng")
        iteration, keys = payload["iteration"], keys or payload.get("keys")
        devices = payload.get("devices", {})
    else:
        ckpt = load_checkpoint(checkpoint_path)
        if netdef is None or feeds is None:
            raise ValueError("%s is a training checkpoint: pass netdef= (the training NetDef) and "
                             "feeds= ({blob: array}, the batch of the iteration to re-run)"
                             % checkpoint_path)
        if iteration is not None and int(iteration) != ckpt["iteration"] + 1:
            raise ValueError(
                "checkpoint %s holds the state after iteration %d, so it re-runs iteration %d, "
                "not %d: replaying iteration %d needs the state right before it (use the "
                "divergence_it%d.pt reproducer the guard wrote, or resume training from this "
                "checkpoint up to there)" % (checkpoint_path, ckpt["iteration"],
                                             ckpt["iteration"] + 1, iteration, iteration, iteration))
        net = netinfo.as_netdef(netdef)
        blobs = dict(ckpt["blobs"])
        rng = (ckpt.get("rng") or {}).get("workspace")
        iteration = ckpt["iteration"] + 1
        if device is None:
            device = _net_cuda_device(net)
    for name, value in (feeds or {}).items():
        blobs[name] = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    for name, value in blobs.items():
        if not isinstance(value, torch.Tensor):
            continue
        where = device if device is not None else devices.get(name)
        if where is not None and (not str(where).startswith("cuda") or torch.cuda.is_available()):
            blobs[name] = value.to(where)
    replay = replay_iteration(net, blobs, rng=rng)
    per_sample_name = netinfo.per_sample_loss(net)
    data_name = netinfo.first_conv_input(net) or (netinfo.read_before_written(net) or [None])[0]
    suspects = suspect_samples(replay["forward_blobs"].get(data_name, blobs.get(data_name)), keys,
                               replay["forward_blobs"].get(per_sample_name))
    return ReplayResult(iteration=iteration, loss=replay["loss"],
                        first_nonfinite=replay["first_nonfinite"], origin=replay["origin"],
                        suspects=suspects, error=replay["error"], blobs=replay["blobs"])


def _net_cuda_device(net):
    options = [net.device_option] if net.HasField("device_option") else []
    options += [op.device_option for op in net.op if op.HasField("device_option")]
    for option in options:
        if option.device_type == 1:
            return torch.device("cuda", option.device_id)
    return None
