"""Training diagnostics: make a run's problems visible at once, explain them, and recover where safe.

    stats.py     per-blob statistics (min/max/mean/sdev/norm/zeros/dead ReLUs/NaN/Inf) + table
    health.py    `analyze_nets` (static NetDef checks) and `HealthMonitor` (runtime checks)
    guard.py     `DivergenceGuard`: NaN/Inf or loss spike -> report, stop / skip / rollback;
                 `reproduce()` re-runs one iteration from a reproducer or checkpoint
    findings.py  `Finding` (code, severity, message, where) and the once-per-problem log
    hook.py      `Diagnostics`: the object a training loop calls
    settings.py  `DiagnosticsConfig`: every knob, documented (the config's `diagnostics` section)
    netinfo.py   reading a training NetDef: forward/gradient/update ops, who writes a blob
    inspection.py  reading metrics.jsonl back: tables, findings, norm plots (tools/inspect_training.py)
    demo.py      small CPU stand-ins for the four stories (tests, notebooks/03_diagnosing_training)

What fires, by code (each message says the cause and the fix):
    start-up   reinit_pretrained, reinit_static, gradient_ascent, negative_base_lr,
               lr_poly_past_max_iter, lr_poly_no_max_iter, lr_poly_power, lr_schedule,
               bn_running_stats_drift, frozen_blob_updated, params_not_updated, zero_lr
    per batch  label_range, label_dtype, input_scale
    running    stuck_at_chance, loss_saturated, vanishing_updates, large_updates,
               frozen_blob_changed (naming the op that writes the blob), lr_nonfinite,
               lr_sign_flip, input_scale
    statistics nonfinite_blobs, dead_relu, vanishing_gradients
    guard      a DivergenceReport (nonfinite_loss | loss_spike) and the policy's action

The protocol a training loop follows (the Trainer does exactly this):

    diag = Diagnostics(cfg.diagnostics, output_dir=run_dir, num_classes=101,
                       max_iter=cfg.solver.max_iter, log_lines=run_log.info,
                       write_record=metrics.write)
    # after param_init_net ran and the zoo weights were fed:
    diag.on_start(model.net, model.param_init_net, model.params, workspace, zoo_model=zoo)
    it = start
    while it < max_iter:
        data, labels, keys = next(batches)
        if diag.on_batch(it + 1, data, labels, keys) == Action.SKIP:  # a quarantined record
            continue
        feed(data, labels); workspace.RunNet(model.net); loss = fetch("loss")
        action = diag.after_iteration(it + 1, loss, workspace)
        if action != Action.CONTINUE:           # SKIP | ROLLBACK | STOP: an earlier state is
            it = diag.resume_iteration          # back in the workspace; continue after it
            if action == Action.STOP:
                break                           # (a checkpoint now saves a healthy state)
            continue
        it += 1
        record = diag.stats_record(it, workspace)  # every stats_interval iterations, else None
        if record: metrics.write(record)

`train_net` may be one net or the list of nets one iteration runs ([fwd_bwd, update]); give
`zoo_model` only to a run that starts from the zoo weights (a resumed run has trained them).
`on_start` returns the start-up findings; every finding is also logged once (through
`log_lines`, else the `food101.diagnostics` logger) and written as a
{"phase": "diagnostics", "kind": "finding", ...} record; divergences as
{"phase": "diagnostics", "kind": "divergence", ...}; statistics as {"phase": "stats",
"kind": "blob_stats", "iteration", "blobs": {name: {kind, shape, min, max, ...}}}, which
`tools/inspect_training.py` prints and plots.

On "rollback" the guard has already restored the last good in-memory state and multiplied the
LearningRate ops' base_lr by lr_scale in the created nets (and in the NetDef, when a single one
was given); `diag.guard.lr_factor` is the product of the scalings so far, for a trainer that
rebuilds its nets. Cost: after_iteration reads the loss as a float (one device sync per
iteration); the other checks run every health_interval / stats_interval iterations.
"""
from food101.diagnostics.findings import ERROR, INFO, WARNING, Finding, FindingLog, Where
from food101.diagnostics.guard import (Action, DivergenceGuard, DivergenceReport, ReplayResult, StateSnapshot, replay_iteration,
                    reproduce, scale_learning_rate, suspect_samples)
from food101.diagnostics.health import HealthMonitor, analyze_nets, check_pretrained_values, zoo_weights
from food101.diagnostics.hook import Diagnostics
from food101.diagnostics.settings import DiagnosticsConfig, resolve_settings
from food101.diagnostics.stats import BlobStats, collect_stats, format_table, select_blobs, tensor_stats

__all__ = [
    "Diagnostics", "DiagnosticsConfig", "resolve_settings",
    "Finding", "FindingLog", "Where", "INFO", "WARNING", "ERROR",
    "analyze_nets", "HealthMonitor", "check_pretrained_values", "zoo_weights",
    "Action", "DivergenceGuard", "DivergenceReport", "StateSnapshot", "replay_iteration", "reproduce",
    "ReplayResult", "scale_learning_rate", "suspect_samples",
    "BlobStats", "collect_stats", "tensor_stats", "format_table", "select_blobs",
]
