"""`Diagnostics`: the one object a training loop calls; it runs the checks, the statistics and
the divergence guard, and turns their results into log lines and metrics records."""
import logging
import math
import os

from food101.diagnostics import netinfo
from food101.diagnostics.findings import ERROR, WARNING, Finding, FindingLog, Where
from food101.diagnostics.guard import Action, DivergenceGuard, scale_learning_rate
from food101.diagnostics.health import (HealthMonitor, analyze_nets, blob_dict, check_not_pretrained,
                                       zoo_weights)
from food101.diagnostics.settings import resolve_settings
from food101.diagnostics.stats import (collect_stats, format_table, relu_outputs, select_blobs, stats_record,
                    trained_relus)

log = logging.getLogger("food101.diagnostics")

DEAD_RELU_WARN = 0.75   # fraction of a ReLU's channels dead over a whole batch
VANISHING = 1e-4        # first / last trained layer's activation-gradient norm


class Diagnostics:
    """Training diagnostics behind four calls (see the package docstring for the protocol).

    config: a DiagnosticsConfig, a dict of its keys, or None for the defaults.
    output_dir: where divergence reports go (config.report_dir is relative to it).
    num_classes: classifier outputs (inferred from the net after the first iteration if None).
    max_iter: iterations the run will train (schedule checks).
    log_lines: callable(*lines) for the run's log (default: the logging module).
    log_detail: callable(*lines) for long detail (the per-blob statistics table): the run's log
    file only, say; the table then shows as one summary line on `log_lines`. Default: log_lines.
    write_record: callable(dict) appending to metrics.jsonl; without it, records collect in
    `pending_records()`."""

    def __init__(self, config=None, *, output_dir=None, num_classes=None, max_iter=None,
                 log_lines=None, write_record=None, log_detail=None):
        self.settings = resolve_settings(config)
        self.output_dir = output_dir
        self.num_classes = num_classes
        self.max_iter = max_iter
        self._log_lines = log_lines
        self._log_detail = log_detail
        self._write_record = write_record
        self._records = []
        self.log = FindingLog(_LineLogger(log_lines) if log_lines is not None else log)
        self.monitor = None
        self.guard = None
        self.workspace = None
        self.netdef = None
        self.params = []
        self.param_to_grad = {}
        self._relus = set()
        self._trained_relus = set()
        self._trained_outputs = []
        self.last_stats = None
        self._last_action = Action.CONTINUE
        self._carried = {}          # a checkpoint's guard state kept for a run without a guard

    # -------------------------------------------------------------- plumbing
    @property
    def enabled(self):
        return self.settings.enabled

    @property
    def findings(self):
        return list(self.log.all)

    @property
    def reports(self):
        return list(self.guard.reports) if self.guard else []

    @property
    def resume_iteration(self):
        """After "skip" or "rollback": the iteration whose end state the workspace now holds;
        continue with resume_iteration + 1."""
        return self.guard.resume_iteration if self.guard else None

    @property
    def quarantined_keys(self):
        return set(self.guard.quarantined_keys) if self.guard else set()

    def codes(self):
        return self.log.codes()

    def _emit_lines(self, *lines):
        if self._log_lines is not None:
            self._log_lines(*lines)
        else:
            for line in lines:
                log.info("%s", line)

    def _record(self, record):
        if self._write_record is not None:
            self._write_record(record)
        else:
            self._records.append(record)

    def add_findings(self, findings):
        """Log and record findings from elsewhere (the trainer's own checks) like ours."""
        for f in findings:
            if self.log.add(f):
                self._record(f.to_record())

    _add = add_findings

    def pending_records(self):
        """Records (findings, divergence reports) not yet handed out, for metrics.jsonl."""
        out, self._records = self._records, []
        return out

    # -------------------------------------------------------------- the hook
    def on_start(self, train_net, param_init_net, params, workspace, zoo_model=None,
                 param_to_grad=None, frozen_blobs=None, covered=()):
        """Before the first iteration, after the params are initialised (param_init_net run)
        and the zoo weights loaded. Runs the static checks and the pretrained-weights check;
        returns the findings. frozen_blobs: the blobs that must not change (for a model from
        zoo.build_finetune_model: model.finetune.frozen_blobs); by default the net's inputs
        that are pretrained or written back without being params. covered: finding codes the
        caller has already reported in its own terms (a Caffe solver's poly finding covers
        lr_poly_power): not repeated."""
        if not self.enabled:
            return []
        s = self.settings
        self.workspace = workspace
        self.netdef = netinfo.as_netdef(train_net)
        init = netinfo.as_netdef(param_init_net) if param_init_net is not None else None
        self.params = [str(p) for p in params]
        self.param_to_grad = {str(k): str(v) for k, v in (param_to_grad or {}).items()}
        self._relus = relu_outputs(self.netdef)
        self._trained_relus = trained_relus(self.netdef, self.params)
        param_set = set(self.params)
        self._trained_outputs = [op.output[0] for op in
                                 self.netdef.op[:netinfo.forward_end(self.netdef)]
                                 if op.output and any(i in param_set for i in op.input)]
        weights = zoo_weights(zoo_model)
        static = analyze_nets(self.netdef, init, self.params, weights or None, self.max_iter)
        self.monitor = HealthMonitor(self.netdef, self.params, s, num_classes=self.num_classes,
                                     zoo_model=weights or None, max_iter=self.max_iter)
        if zoo_model is not None and not weights:
            static = check_not_pretrained(zoo_model) + static
        runtime = self.monitor.on_start(workspace, init, frozen_blobs)
        blobs = blob_dict(workspace)
        if weights:
            # the values in the workspace settle it: a re-fill that did not happen (the zoo
            # weights were loaded afterwards) is no problem, one that did is reinit_pretrained
            static = [f for f in static if f.code != "reinit_static" or f.where.blob not in blobs]
        static = [f for f in static if f.code not in set(covered)]
        self._add(static + runtime)
        report_dir = s.report_dir
        if self.output_dir and not os.path.isabs(report_dir):
            report_dir = os.path.join(self.output_dir, report_dir)
        elif not self.output_dir and not os.path.isabs(report_dir):
            report_dir = None  # no run folder: keep reports in memory only
        if s.divergence_policy:
            self.guard = DivergenceGuard(
                train_net, policy=s.divergence_policy, spike_factor=s.spike_factor,
                window=s.spike_window, warmup=s.spike_warmup, lr_scale=s.lr_scale,
                good_state_interval=s.good_state_interval, max_recoveries=s.max_recoveries,
                report_dir=report_dir, log_reports=False)
        return static + runtime

    def state_dict(self):
        """The state a checkpoint keeps so a resumed run goes on as this one would (the
        divergence guard's lr scaling, quarantine and loss window); {} without a guard."""
        if self.guard is not None:
            return {"guard": self.guard.state_dict()}
        return dict(self._carried)  # a resumed guard state this run has no guard for

    def load_state_dict(self, state, workspace, nets=None):
        """A checkpoint's `state_dict()` back, after on_start. The guard's lr scaling applies
        to `nets` (the created nets' names) even when this run has no guard: it is part of the
        trained run, not of the diagnostics settings."""
        guard = (state or {}).get("guard")
        if not guard:
            return
        if self.guard is not None:
            self.guard.load_state_dict(guard, workspace)
        else:
            if float(guard.get("lr_factor", 1.0)) != 1.0 and nets:
                scale_learning_rate(workspace, nets, float(guard["lr_factor"]))
            self._carried = {"guard": dict(guard)}  # into this run's checkpoints too

    def on_batch(self, it, data, labels=None, keys=None):
        """Before iteration `it` runs, with its batch (host or device tensors/arrays) and the
        LMDB keys of its records. Returns "skip" if the batch holds a quarantined record."""
        if not self.enabled or self.monitor is None:
            return Action.CONTINUE
        self._add(self.monitor.on_batch(data, labels, keys, iteration=it))
        if self.guard is not None and self.workspace is not None:
            return self.guard.before_iteration(it, self.workspace, data=data, keys=keys)
        return Action.CONTINUE

    def after_iteration(self, it, loss, workspace):
        """After iteration `it` ran; returns an Action (CONTINUE, SKIP, ROLLBACK or STOP)."""
        if not self.enabled or self.monitor is None:
            return Action.CONTINUE
        loss = float(loss) if loss is not None else None  # a device tensor syncs here, once
        action = Action.CONTINUE
        if self.guard is not None:
            seen = len(self.guard.reports)
            action = self.guard.after_iteration(it, loss, workspace)
            if len(self.guard.reports) > seen:
                report = self.guard.reports[-1]
                if self._log_lines is not None:
                    self._log_lines(*str(report).splitlines())
                else:
                    log.error("%s", report)
                record = {"phase": "diagnostics", "kind": "divergence", "iteration": int(it)}
                record.update(report.to_dict())
                self._record(record)
        self._last_action = action
        if action == Action.CONTINUE:
            self._add(self.monitor.after_iteration(it, loss, workspace))
        elif action in (Action.SKIP, Action.ROLLBACK):
            self.monitor.state_restored()
        return action

    def stats_record(self, it, workspace):
        """Every `stats_interval` iterations (and at iteration 1): per-blob statistics, logged
        as a table; returns the metrics.jsonl record, else None."""
        interval = self.settings.stats_interval
        if not self.enabled or not interval or self.netdef is None:
            return None
        if self._last_action != Action.CONTINUE:
            return None  # the iteration was undone: its blobs describe nothing that persists
        if it != 1 and it % interval:
            return None
        blobs = blob_dict(workspace)
        chosen = select_blobs(self.netdef, self.params, blobs, self.settings.stats_blobs,
                              self.param_to_grad)
        kinds = dict(chosen)
        stats = collect_stats({n: blobs[n] for n, _ in chosen}, kinds, self._relus)
        stats = {n: stats[n] for n, _ in chosen if n in stats}  # net order
        if self.monitor is not None:
            for p, ratio in self.monitor.update_ratios.items():
                if p in stats:
                    stats[p].update_ratio = ratio
        self.last_stats = stats
        table = format_table(stats, "Blob statistics at iteration %d" % it).splitlines()
        if self._log_detail is not None:
            self._log_detail(*table)
            self._emit_lines(summary_line(it, stats))
        else:
            self._emit_lines(*table)
        self._add(self._stats_findings(it, stats))
        record = stats_record(it, stats)
        record["phase"] = "stats"
        return record

    def _stats_findings(self, it, stats):
        found = []
        bad = [(n, s) for n, s in stats.items() if s.nan or s.inf]
        if bad:
            name, s = bad[0]
            found.append(Finding(
                "nonfinite_blobs", ERROR,
                "%d blob(s) hold NaN/Inf at iteration %d, first %r (%s: %d NaN, %d Inf)%s. "
                "Training cannot recover from NaN weights: enable the divergence guard "
                "(diagnostics.divergence_policy) to stop or roll back at the first bad iteration."
                % (len(bad), it, name, s.kind, s.nan, s.inf,
                   "; also " + ", ".join(repr(n) for n, _ in bad[1:6]) if len(bad) > 1 else ""),
                Where(blob=name), it))
        norms = [(n, stats[n + "_grad"].norm) for n in self._trained_outputs
                 if n + "_grad" in stats and math.isfinite(stats[n + "_grad"].norm)]
        if len(norms) >= 2 and norms[-1][1] > 0 and norms[0][1] < VANISHING * norms[-1][1]:
            (first, low), (last, high) = norms[0], norms[-1]
            found.append(Finding(
                "vanishing_gradients", WARNING,
                "gradients vanish on their way back at iteration %d: |%s_grad| = %.2g at the first "
                "trained layer against |%s_grad| = %.2g at the last (%s). The "
                "early layers get almost no signal, so they barely train while the loss sits "
                "near chance: typical of deep stacks drawn by XavierFill without pretrained "
                "weights, of dead ReLUs, or of inputs on a far too small scale. Start from the "
                "pretrained weights (or train only the top layers); check the input scale."
                % (it, first, low, last, high, "%.1g times smaller" % (low / high) if low
                   else "no gradient reaches it at all"), Where(blob=first + "_grad"), it))
        dead = sorted(((s.dead_frac, n) for n, s in stats.items()
                       if n in self._trained_relus and s.dead_frac is not None
                       and s.dead_frac >= DEAD_RELU_WARN and len(s.shape) >= 2
                       and s.shape[1] >= 4), reverse=True)
        if dead:
            frac, name = dead[0]
            found.append(Finding(
                "dead_relu", WARNING,
                "dead ReLUs at iteration %d: %.0f%% of the channels of %r are zero for every "
                "image of the batch%s, so no gradient flows back through them. Causes: a large "
                "negative bias or update (lr too high), inputs on the wrong scale, re-initialised "
                "deep stacks whose signal dies out layer by layer; a ReLU right before the "
                "classifier's pooling (SqueezeNet's conv10) can hold the net at chance."
                % (it, 100 * frac, name, "; also " + ", ".join(
                    "%r %.0f%%" % (n, 100 * f) for f, n in dead[1:5]) if len(dead) > 1 else ""),
                Where(blob=name), it))
        if self.monitor is not None:
            self.monitor.findings.extend(found)  # evidence for the monitor's later verdicts
        return found


def summary_line(it, stats):
    """One line for a statistics table that went to the log file."""
    bad = [n for n, s in stats.items() if s.nan or s.inf]
    ratios = [(s.update_ratio, n) for n, s in stats.items() if getattr(s, "update_ratio", None)]
    parts = ["%d blobs" % len(stats),
             ("NaN/Inf in %d (first %r)" % (len(bad), bad[0])) if bad else "no NaN/Inf"]
    if ratios:
        parts.append("largest |update|/|w| %.2g (%s)" % max(ratios))
    return ("Blob statistics at iteration %d: %s (table in train.log and metrics.jsonl; "
            "--verbose prints it)" % (it, ", ".join(parts)))


class _LineLogger:
    """Adapts FindingLog's logger.log(level, fmt, finding) to the run's line logger."""

    def __init__(self, emit):
        self.emit = emit

    def log(self, level, fmt, *args):
        self.emit(*(fmt % args).splitlines())
