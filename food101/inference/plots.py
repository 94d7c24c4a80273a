"""Plots of an evaluation as PNG files (matplotlib, Agg backend: no display needed).

    confusion.png  the confusion matrix, rows normalised (counts written in small ones)

`save_figure` is how every food101 PNG is written (train/plots.py uses it too).
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402


def save_figure(fig, path):
    """Write `fig` as a PNG at `path` (folders created) and close it; returns `path`."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion(matrix, path, class_names=None, title="Confusion matrix (rows: true class)"):
    matrix = np.asarray(matrix, dtype=np.float64)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    n = matrix.shape[0]
    size = min(max(5.0, n * 0.16), 18.0)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(normalised, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if class_names is not None and n <= 120:
        fontsize = 8 if n <= 20 else max(3, int(600 / n))
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax.set_xticklabels(class_names, rotation=90, fontsize=fontsize)
        ax.set_yticklabels(class_names, fontsize=fontsize)
    if n <= 20:  # small matrices: the counts themselves
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(j, i, "%d" % matrix[i, j], ha="center", va="center", fontsize=8,
                            color="black" if normalised[i, j] > 0.6 else "white")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return save_figure(fig, path)
