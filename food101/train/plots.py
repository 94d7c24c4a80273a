"""Training plots as PNG files (matplotlib, Agg backend: no display needed).

    loss.png       raw loss per iteration and the smoothed loss
    accuracy.png   training accuracy (smoothed) and test top-1 / top-5 at each evaluation
    lr.png         learning rate per iteration
    confusion.png  the confusion matrix of the last evaluation, rows normalised
                   (food101.inference.plots.plot_confusion, which evaluation draws too)

All read the records of metrics.jsonl (see metrics.py), so `plot_run(output_dir)` can redraw the
plots of any finished or interrupted run.
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from food101.inference.plots import plot_confusion, save_figure  # noqa: E402
from food101.train.metrics import read_jsonl  # noqa: E402


def _smooth(values, window):
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def plot_loss(records, path):
    train = [r for r in records if r.get("phase") == "train"]
    tests = [r for r in records if r.get("phase") == "test" and r.get("loss") is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        it = [r["iteration"] for r in train]
        ax.plot(it, [r["loss"] for r in train], color="0.7", lw=0.8, label="loss")
        ax.plot(it, [r["smoothed_loss"] for r in train], color="C0", lw=1.6, label="smoothed loss")
    if tests:
        ax.plot([r["iteration"] for r in tests], [r["loss"] for r in tests], "o-", color="C3",
                label="test loss")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title("Loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def plot_accuracy(records, path, window=20):
    train = [r for r in records if r.get("phase") == "train" and r.get("accuracy") is not None]
    tests = [r for r in records if r.get("phase") == "test"]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot([r["iteration"] for r in train], _smooth([r["accuracy"] for r in train], window),
                color="C0", label="train accuracy (smoothed)")
    if tests:
        it = [r["iteration"] for r in tests]
        ax.plot(it, [r["top1"] for r in tests], "o-", color="C2", label="test top-1")
        if all("top5" in r for r in tests):
            ax.plot(it, [r["top5"] for r in tests], "s--", color="C1", label="test top-5")
    ax.set_ylim(0, 1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def plot_lr(records, path, title="Learning rate"):
    """`records`: metrics records, or (iterations, lrs) pairs from tools/lr_schedule.py."""
    if isinstance(records, tuple):
        it, lr = records
    else:
        train = [r for r in records if r.get("phase") == "train"]
        it, lr = [r["iteration"] for r in train], [r["lr"] for r in train]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(it, lr, color="C4")
    ax.set_xlabel("iteration")
    ax.set_ylabel("lr")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_run(output_dir, confusion=None, class_names=None, window=20):
    """Draw every plot of the run in `output_dir` (from its metrics.jsonl); returns {name: path}."""
    records = read_jsonl(os.path.join(output_dir, "metrics.jsonl"))
    plots_dir = os.path.join(output_dir, "plots")
    paths = {
        "loss": plot_loss(records, os.path.join(plots_dir, "loss.png")),
        "accuracy": plot_accuracy(records, os.path.join(plots_dir, "accuracy.png"), window),
        "lr": plot_lr(records, os.path.join(plots_dir, "lr.png")),
    }
    if confusion is not None:
        paths["confusion"] = plot_confusion(confusion, os.path.join(plots_dir, "confusion.png"),
                                            class_names)
    return paths
