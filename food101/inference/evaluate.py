"""Evaluation: top-1, top-5, per-class accuracy and the confusion matrix over an LMDB.

    LMDB ──► reader (in order, no shuffle) ──► centre crop (uint8, on the device)
         ──► test net (frozen zoo backbone + trained classifier, Dropout in test mode)
         ──► class probabilities ──► ClassificationMetrics

`ClassificationMetrics` accumulates batches of (probabilities, labels) and is what the training
loop's periodic evaluation, `evaluate_model` (tools/evaluate.py) and the tests share, so every
number is computed one way. Results are a plain dict (JSON-ready):

    {"images", "top1", "top5", "loss", "per_class": {name: accuracy or None}, "confusion": [[...]]}

`confusion[i][j]` counts images of true class i predicted as j.
"""
import json
import math
import os
import sys

import numpy as np
import torch
from tqdm import tqdm

from food101.data.augment import center_crop
from food101.data.reader import LMDBReader
from food101.fileio import atomic_write
from food101.inference.plots import plot_confusion
from food101.inference.predict import InferenceModel, load_model


class ClassificationMetrics:
    def __init__(self, num_classes, top_k=5):
        self.num_classes = int(num_classes)
        self.top_k = min(int(top_k), self.num_classes)
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.topk_hits = 0
        self.count = 0
        self.loss_sum = 0.0

    def add(self, probabilities, labels):
        """probabilities: N x C (or N x C x 1 x 1) tensor/array; labels: N ints."""
        probs = torch.as_tensor(probabilities).detach().float().reshape(len(labels), -1).cpu()
        labels = torch.as_tensor(labels).detach().reshape(-1).long().cpu()
        if probs.shape[1] != self.num_classes:
            raise ValueError("the net gives %d class scores, the metrics expect %d classes"
                             % (probs.shape[1], self.num_classes))
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError("labels must be in [0, %d), got %d..%d"
                             % (self.num_classes, int(labels.min()), int(labels.max())))
        predicted = probs.argmax(dim=1)
        np.add.at(self.confusion, (labels.numpy(), predicted.numpy()), 1)
        topk = probs.topk(self.top_k, dim=1).indices
        self.topk_hits += int((topk == labels[:, None]).any(dim=1).sum())
        picked = probs.gather(1, labels[:, None]).clamp_min(1e-20)
        self.loss_sum += float(-picked.log().sum())  # cross entropy, as LabelCrossEntropy
        self.count += len(labels)

    def results(self, class_names=None):
        total = max(self.count, 1)
        per_class_total = self.confusion.sum(axis=1)
        correct = np.diag(self.confusion)
        names = class_names or [str(i) for i in range(self.num_classes)]
        per_class = {name: (float(c) / t if t else None)
                     for name, c, t in zip(names, correct, per_class_total)}
        present = [v for v in per_class.values() if v is not None]
        return {
            "images": int(self.count),
            "top1": float(correct.sum()) / total,
            "top%d" % 5: float(self.topk_hits) / total,
            "loss": self.loss_sum / total,
            "mean_class_accuracy": float(np.mean(present)) if present else math.nan,
            "per_class": per_class,
            "confusion": self.confusion.tolist(),
        }


def summary_lines(results, top_worst=5):
    """A few human lines about an evaluation (used by tools/evaluate.py)."""
    lines = ["images: %d" % results["images"],
             "top-1 accuracy: %.4f" % results["top1"],
             "top-5 accuracy: %.4f" % results["top5"],
             "mean per-class accuracy: %.4f" % results["mean_class_accuracy"],
             "loss: %.4f" % results["loss"]]
    scored = sorted(((v, k) for k, v in results["per_class"].items() if v is not None))
    if scored:
        lines.append("worst classes: " + ", ".join("%s %.2f" % (k, v) for v, k in scored[:top_worst]))
        lines.append("best classes: " + ", ".join("%s %.2f" % (k, v) for v, k in scored[::-1][:top_worst]))
    return lines


def write_results(results, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    return path


def evaluate_batches(reader, probabilities, class_names=None, num_classes=None, limit_batches=0,
                     should_stop=None, progress=False):
    """The one evaluation loop (training's periodic evaluation and `evaluate_model` both run
    it): for each (uint8 images, labels) batch of `reader`, in order, `probabilities(images)`
    (N x C) goes into ClassificationMetrics (of `num_classes`, else of the net's C). Returns
    the results dict, or None when `should_stop()` turned true on the way (Ctrl-C in training)."""
    metrics = ClassificationMetrics(num_classes) if num_classes else None
    total = len(reader) if not limit_batches else min(limit_batches, len(reader))
    with tqdm(total=total, disable=not (progress and sys.stderr.isatty()), unit="batch",
              leave=False) as bar:
        for k, (images, labels) in enumerate(reader):
            if limit_batches and k >= limit_batches:
                break
            if should_stop is not None and should_stop():
                return None
            probs = probabilities(images)
            if metrics is None:
                metrics = ClassificationMetrics(probs.shape[1])
            metrics.add(probs, labels)
            bar.update(1)
    names = list(class_names) if class_names else None
    if names is None:
        names = ["class_%d" % i for i in range(metrics.num_classes)]
    return metrics.results(names)


def evaluate_model(model, lmdb_path, batch_size=50, device="cpu", limit_batches=0, out_dir=None,
                   progress=False):
    """Evaluate a saved model (deploy folder, checkpoint or run folder; see predict.load_model)
    on an LMDB with centre crops. Writes <out_dir>/eval.json and confusion.png when out_dir is
    given. Returns the results dict (plus "model", "lmdb", and the written paths)."""
    if not isinstance(model, InferenceModel):
        model = load_model(model, device=device)
    if not os.path.exists(lmdb_path):
        raise FileNotFoundError("LMDB %s does not exist" % lmdb_path)
    with LMDBReader(lmdb_path, batch_size, shuffle=False, num_threads=1) as reader:
        names = model.class_names or reader.classes
        if reader.classes and model.class_names and list(reader.classes) != list(model.class_names):
            raise ValueError("the LMDB's classes (%s ...) differ from the model's (%s ...): labels "
                             "would not mean the same classes" % (
                                 ", ".join(reader.classes[:4]), ", ".join(model.class_names[:4])))
        results = evaluate_batches(
            reader, lambda images: model.probabilities(center_crop(images, model.crop,
                                                                   mean=model.mean_bgr)),
            names, limit_batches=limit_batches, progress=progress)
    names = list(names) if names else ["class_%d" % i for i in range(len(results["confusion"]))]
    results.update(model=str(model.source), lmdb=os.path.abspath(lmdb_path))
    if out_dir:
        results["json_path"] = os.path.join(out_dir, "eval.json")
        results["confusion_png"] = plot_confusion(results["confusion"],
                                                  os.path.join(out_dir, "confusion.png"), list(names))
        write_results(results, results["json_path"])
    return results
