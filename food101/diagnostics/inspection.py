"""Reading a run's diagnostics back from metrics.jsonl: tables, findings, divergences, plots.

    metrics.jsonl ──► records(path)  ──► stats_records()   {"phase": "stats", "iteration", "blobs"}
                                     ├─► findings_of()     {"kind": "finding", ...}
                                     └─► divergences_of()  {"kind": "divergence", ...}
    summary(...)   text: the findings, the divergences, the statistics table of one iteration
    plot_norms()   PNG: per-blob L2 norm of gradients and activations (and params) over iterations

`tools/inspect_training.py` is the command-line face of this module.
"""
import json
import math
import os
import re

from food101.diagnostics.stats import format_table

METRICS_FILE = "metrics.jsonl"


def records(path):
    """Every JSON record of a run: `path` is metrics.jsonl or the run folder holding it."""
    if os.path.isdir(path):
        path = os.path.join(path, METRICS_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError("%s does not exist (expected a run folder or its %s)"
                                % (path, METRICS_FILE))
    out = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError("%s:%d: not a JSON line (%s)" % (path, number, e)) from None
    return out


def stats_records(all_records):
    return [r for r in all_records if r.get("kind") == "blob_stats" or r.get("phase") == "stats"]


def findings_of(all_records):
    return [r for r in all_records if r.get("kind") == "finding"]


def divergences_of(all_records):
    return [r for r in all_records if r.get("kind") == "divergence"]


def _select(blobs, kinds=None, pattern=None):
    regex = re.compile(pattern) if pattern else None
    return {name: row for name, row in blobs.items()
            if (not kinds or row.get("kind") in kinds) and (regex is None or regex.search(name))}


def summary(all_records, iteration=None, kinds=None, pattern=None):
    """Text lines: findings, divergences, and the statistics table at `iteration` (default:
    the last recorded one)."""
    lines = []
    found = findings_of(all_records)
    if found:
        lines.append("Findings (%d):" % len(found))
        for f in found:
            at = " @ iteration %s" % f["iteration"] if f.get("iteration") is not None else ""
            lines.append("  [%s] %s%s: %s" % (f.get("severity", "?").upper(), f.get("code"), at,
                                              f.get("message")))
    for d in divergences_of(all_records):
        lines.append("Divergence at iteration %s (%s, loss %s): suspect keys %s; action %s" % (
            d.get("iteration"), d.get("reason"), d.get("loss"),
            [s.get("key") for s in d.get("suspects", [])] or "none", d.get("action")))
    stats = stats_records(all_records)
    if not stats:
        lines.append("No blob statistics in this run (diagnostics.stats_interval was 0?).")
        return lines
    if iteration is None:
        chosen = stats[-1]
    else:
        matching = [r for r in stats if r.get("iteration") == iteration]
        if not matching:
            raise ValueError("no blob statistics at iteration %d; recorded at: %s" % (
                iteration, ", ".join(str(r.get("iteration")) for r in stats)))
        chosen = matching[-1]
    blobs = _select(chosen.get("blobs", {}), kinds, pattern)
    lines.append("")
    lines.extend(format_table(blobs, "Blob statistics at iteration %s (%d of %d recorded passes)"
                              % (chosen.get("iteration"), stats.index(chosen) + 1,
                                 len(stats))).splitlines())
    return lines


def _number(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value


def norm_series(all_records, kind, pattern=None):
    """{blob: ([iterations], [L2 norms])} for blobs of `kind` over the recorded passes."""
    series = {}
    for record in stats_records(all_records):
        for name, row in _select(record.get("blobs", {}), [kind], pattern).items():
            its, values = series.setdefault(name, ([], []))
            its.append(record.get("iteration"))
            values.append(_number(row.get("norm")))
    return series


def plot_norms(all_records, path, kinds=("grad", "activation"), pattern=None, max_lines=24):
    """One panel per kind: each blob's L2 norm over the iterations, log scale. Returns path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [(k, norm_series(all_records, k, pattern)) for k in kinds]
    panels = [(k, s) for k, s in panels if s]
    if not panels:
        raise ValueError("no blob statistics of kind %s to plot" % ", ".join(kinds))
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.6 * len(panels)), squeeze=False)
    titles = {"grad": "gradient L2 norm", "activation": "activation L2 norm",
              "param": "parameter L2 norm", "state": "running statistics L2 norm"}
    for ax, (kind, series) in zip(axes[:, 0], panels):
        for name, (its, values) in list(series.items())[:max_lines]:
            shown = [(i, v) for i, v in zip(its, values) if math.isfinite(v) and v > 0]
            if shown:
                ax.plot([i for i, _ in shown], [v for _, v in shown], marker=".", label=name)
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_title(titles.get(kind, kind) + (" (first %d blobs)" % max_lines
                                               if len(series) > max_lines else ""))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, ncol=2, loc="best")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
