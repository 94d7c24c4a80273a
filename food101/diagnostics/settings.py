"""The diagnostics settings: every knob with its default and what it does.

`DiagnosticsConfig` follows the training config's style (one frozen dataclass, each key
documented), so the driver's config tree can hold it as its `diagnostics` section. The hook also
accepts a plain dict or any object with some of these attributes; missing keys take the defaults
below (`resolve_settings`).
"""
import dataclasses
from dataclasses import dataclass
from typing import Tuple

from food101.config_fields import documented


_key = documented


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Training diagnostics: blob statistics, health checks, divergence guard."""
    enabled: bool = _key(True, "run the diagnostics at all (start-up checks, health checks, guard)")
    stats_interval: int = _key(100, "every this many iterations, record min/max/mean/sdev/norm/"
                                    "zero fraction/NaN/Inf of params, gradients and activations "
                                    "(a table in the log, a blob_stats record in metrics.jsonl); "
                                    "0 = never")
    stats_blobs: str = _key("all", "which blobs the statistics cover: params | grads (of params "
                                   "and of activations) | activations | all (comma-separated "
                                   "list allowed)")
    health_interval: int = _key(50, "every this many iterations check update/weight ratios, frozen "
                                    "blobs, the learning rate and the network input scale; 0 = "
                                    "only at start-up")
    chance_patience: int = _key(500, "warn when the running loss stays within chance_tolerance of "
                                     "ln(num_classes) (chance) for this many iterations; 0 = never")
    chance_tolerance: float = _key(0.05, "relative distance from ln(C) that still counts as chance")
    update_ratio_low: float = _key(1e-6, "warn when |update| / |weight| of a trained param stays "
                                         "below this (vanishing gradients or a far too small lr)")
    update_ratio_high: float = _key(0.5, "warn when |update| / |weight| exceeds this (lr far too "
                                         "large: weights are rewritten every iteration)")
    input_std_range: Tuple[float, ...] = _key((10.0, 200.0),
                                  "expected sdev of the first Conv's input for zoo models trained "
                                  "on mean-subtracted 0..255 BGR; outside it the data scale is "
                                  "flagged ([0,1] data has sdev ~0.3)")
    divergence_policy: str = _key("rollback", "on NaN/Inf or a loss spike: stop | skip (undo "
                                              "the iteration, drop the batch) | rollback (restore "
                                              "the last good state, scale the lr by lr_scale) | "
                                              "report (log only)")
    spike_factor: float = _key(5.0, "a loss above spike_factor x the running average counts as a "
                                    "spike (0 = only NaN/Inf)")
    spike_window: int = _key(50, "iterations in the running average the spike test compares with")
    spike_warmup: int = _key(20, "iterations before spikes are judged (the average needs history)")
    lr_scale: float = _key(0.5, "rollback multiplies every LearningRate op's base_lr by this")
    good_state_interval: int = _key(100, "keep an in-memory copy of the training state (params, "
                                         "momenta, iteration, BN statistics) every this many "
                                         "healthy iterations; rollback returns to it")
    max_recoveries: int = _key(5, "give up (stop) after this many skips/rollbacks")
    report_dir: str = _key("diagnostics", "folder for divergence reports and reproducer files "
                                          "(relative to train.output_dir)")


SETTING_NAMES = tuple(f.name for f in dataclasses.fields(DiagnosticsConfig))


def resolve_settings(section=None, **overrides):
    """A DiagnosticsConfig from None, a DiagnosticsConfig, a dict or an object with attributes."""
    if isinstance(section, DiagnosticsConfig) and not overrides:
        return section
    values = {}
    if isinstance(section, dict):
        unknown = sorted(set(section) - set(SETTING_NAMES))
        if unknown:
            raise ValueError("unknown diagnostics setting(s) %s; valid: %s"
                             % (", ".join(unknown), ", ".join(SETTING_NAMES)))
        values.update(section)
    elif section is not None:
        values.update({n: getattr(section, n) for n in SETTING_NAMES if hasattr(section, n)})
    values.update(overrides)
    if "input_std_range" in values:
        values["input_std_range"] = tuple(float(v) for v in values["input_std_range"])
    cfg = DiagnosticsConfig(**values)
    if cfg.divergence_policy not in ("stop", "skip", "rollback", "report"):
        raise ValueError("diagnostics.divergence_policy must be stop, skip, rollback or report, "
                         "got %r" % cfg.divergence_policy)
    return cfg
