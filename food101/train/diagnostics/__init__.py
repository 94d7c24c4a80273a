"""Training diagnostics: make a run's problems visible at once, explain them, and recover where safe.

    stats.py     per-blob statistics (min/max/mean/sdev/norm/zeros/dead ReLUs/NaN/Inf) + table
    health.py    `analyze_nets` (static NetDef checks) and `HealthMonitor` (runtime checks)
    guard.py     `DivergenceGuard`: NaN/Inf or loss spike -> report, stop / skip / rollback;
                 `reproduce()` re-runs one iteration from a reproducer or checkpoint
    findings.py  `Finding` (code, severity, message, where) and the once-per-problem log
    hook.py      `Diagnostics`: the object a training loop calls
    settings.py  `DiagnosticsConfig`: every knob, documented

The protocol a training loop follows (the Trainer does exactly this):

    diag = Diagnostics(cfg.diagnostics, output_dir=run_dir, num_classes=101,
                       max_iter=cfg.solver.max_iter, log_lines=run_log.info,
                       write_record=metrics.write)
    # after param_init_net ran and the zoo weights were fed:
    diag.on_start(model.net, model.param_init_net, model.params, workspace, zoo_model=zoo)
    it = start
    while it < max_iter:
        data, labels, keys = next(batches)
        if diag.on_batch(it + 1, data, labels, keys) == "skip":   # a quarantined record
            continue
        feed(data, labels); workspace.RunNet(model.net); loss = fetch("loss")
        action = diag.after_iteration(it + 1, loss, workspace)
        if action != "continue":                # skip | rollback | stop: an earlier state is
            it = diag.resume_iteration          # back in the workspace; continue after it
            if action == "stop":
                break                           # (a checkpoint now saves a healthy state)
            continue
        it += 1
        record = diag.stats_record(it, workspace)  # every stats_interval iterations, else None
        if record: metrics.write(record)

`on_start` returns the start-up findings; every finding is also logged once (through
`log_lines`, else the `food101.train.diagnostics` logger) and written as a
{"phase": "diagnostics", "kind": "finding", ...} record; divergences as
{"phase": "diagnostics", "kind": "divergence", ...}; statistics as {"phase": "stats",
"kind": "blob_stats", "iteration", "blobs": {name: {kind, shape, min, max, ...}}}, which
`tools/inspect_training.py` prints and plots.

On "rollback" the guard has already restored the last good in-memory state and multiplied the
LearningRate ops' base_lr (in the created net and in the NetDef it was given) by lr_scale; a
trainer that rebuilds its net from its own NetDef must apply `diag.guard.net`'s base_lr values.
"""
from .findings import ERROR, INFO, WARNING, Finding, FindingLog, Where
from .guard import (DivergenceGuard, DivergenceReport, ReplayResult, StateSnapshot, replay_iteration,
                    reproduce, scale_learning_rate, suspect_samples)
from .health import HealthMonitor, analyze_nets, check_pretrained_values, zoo_weights
from .hook import Diagnostics
from .settings import DiagnosticsConfig, resolve_settings
from .stats import BlobStats, collect_stats, format_table, select_blobs, tensor_stats

__all__ = [
    "Diagnostics", "DiagnosticsConfig", "resolve_settings",
    "Finding", "FindingLog", "Where", "INFO", "WARNING", "ERROR",
    "analyze_nets", "HealthMonitor", "check_pretrained_values", "zoo_weights",
    "DivergenceGuard", "DivergenceReport", "StateSnapshot", "replay_iteration", "reproduce",
    "ReplayResult", "scale_learning_rate", "suspect_samples",
    "BlobStats", "collect_stats", "tensor_stats", "format_table", "select_blobs",
]
