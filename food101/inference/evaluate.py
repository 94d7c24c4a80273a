"""Evaluation: top-1, top-5, per-class accuracy and the confusion matrix over an LMDB.

    LMDB ──► reader (in order, no shuffle) ──► centre crop (uint8, on the device)
         ──► test net (frozen zoo backbone + trained classifier, Dropout in test mode)
         ──► class probabilities ──► ClassificationMetrics

`ClassificationMetrics` accumulates batches of (probabilities, labels) and is what the training
loop's periodic evaluation, `evaluate_model` (tools/evaluate.py) and the tests share, so every
number is computed one way. Results are a plain dict (JSON-ready):

    {"images", "top1", "top5", "loss", "per_class": {name: accuracy or None}, "confusion": [[...]],
     "ties", "uniform", "never_predicted", "findings": [text]}

`confusion[i][j]` counts images of true class i predicted as j.

Ties never score. argmax picks the first of equal maxima, so a classifier whose outputs are
uniform (a dead ReLU before the pooling: every class scores 1/C) would "predict" class 0 for
every image and be right on all of class 0. Here a tie is broken against the label: the label
counts as top-k only if fewer than k other classes score at least as high as it, less
TIE_TOLERANCE x chance (1/C): scores that close are the same answer, e.g. 0.1711 vs 0.1707 from
dead class units that only carry their biases. The confusion matrix records the best other
class. `ties` counts the images plain argmax would have credited through a tie; `uniform` the
images whose scores are all equal (within the same tolerance); `constant` the images whose score
vector is identical to that of an image of another class (the output did not depend on the
image). These, and classes that are never predicted, are findings of the evaluation.
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

TIE_TOLERANCE = 0.01        # fraction of the chance probability 1/C below which scores tie
_MAX_DISTINCT_OUTPUTS = 200000



class ClassificationMetrics:
    def __init__(self, num_classes, top_k=5):
        self.num_classes = int(num_classes)
        self.top_k = min(int(top_k), self.num_classes)
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.topk_hits = 0
        self.count = 0
        self.loss_sum = 0.0
        self.ties = 0           # images argmax would have scored as right through a tie
        self.uniform = 0        # images whose class scores are all equal
        self.tolerance = TIE_TOLERANCE / self.num_classes
        self._outputs = {}      # score vector bytes -> [labels seen, images]

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
        label_score = probs.gather(1, labels[:, None])
        others = probs.scatter(1, labels[:, None], float("-inf"))   # every class but the label
        rivals = (others >= label_score - self.tolerance).sum(dim=1)  # ties count against it
        best_other = others.argmax(dim=1)
        predicted = torch.where(rivals == 0, labels, best_other)
        np.add.at(self.confusion, (labels.numpy(), predicted.numpy()), 1)
        self.topk_hits += int((rivals < self.top_k).sum())
        self.ties += int(((probs.argmax(dim=1) == labels) & (rivals > 0)).sum())
        self.uniform += int((probs.amax(dim=1) - probs.amin(dim=1) <= self.tolerance).sum())
        if len(self._outputs) < _MAX_DISTINCT_OUTPUTS:
            rows = probs.numpy()
            for row, label in zip(rows, labels.tolist()):
                entry = self._outputs.setdefault(row.tobytes(), [set(), 0])
                entry[0].add(label)
                entry[1] += 1
        picked = label_score.clamp_min(1e-20)
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
        never = [name for name, n in zip(names, self.confusion.sum(axis=0)) if n == 0]
        return {
            "images": int(self.count),
            "top1": float(correct.sum()) / total,
            "top%d" % 5: float(self.topk_hits) / total,
            "loss": self.loss_sum / total,
            "mean_class_accuracy": float(np.mean(present)) if present else math.nan,
            "per_class": per_class,
            "confusion": self.confusion.tolist(),
            "ties": int(self.ties),
            "uniform": int(self.uniform),
            "constant": self.constant_outputs(),
            "never_predicted": never,
            "findings": self.findings(never),
        }

    def constant_outputs(self):
        """Images whose score vector is bit-identical to that of an image of another class."""
        return int(sum(n for labels, n in self._outputs.values() if len(labels) > 1))

    def findings(self, never_predicted):
        """What the figures hide: uniform outputs, argmax ties, classes never predicted."""
        out = []
        constant = self.constant_outputs()
        if constant:
            out.append("%d of %d images got exactly the same scores as images of other classes: "
                       "for them the output does not depend on the image (dead units: the class "
                       "scores are only the biases)" % (constant, self.count))
        if self.uniform:
            out.append("%d of %d images got the same score for every class (uniform outputs: the "
                       "classifier's outputs are dead, e.g. a ReLU before the global pooling that "
                       "outputs 0 for every class); they count as wrong"
                       % (self.uniform, self.count))
        if self.ties:
            out.append("%d image(s) had their label tied with another class for the top score: "
                       "counted as wrong (plain argmax would have called them right)" % self.ties)
        if never_predicted and self.count:
            out.append("%d class(es) never predicted: %s" % (
                len(never_predicted), ", ".join(never_predicted[:10])
                + (" ..." if len(never_predicted) > 10 else "")))
        return out


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
    lines.extend("finding: " + f for f in results.get("findings", []))
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
                                                                   mean=model.mean)),
            names, limit_batches=limit_batches, progress=progress)
    names = list(names) if names else ["class_%d" % i for i in range(len(results["confusion"]))]
    results.update(model=str(model.source), lmdb=os.path.abspath(lmdb_path))
    if out_dir:
        results["json_path"] = os.path.join(out_dir, "eval.json")
        results["confusion_png"] = plot_confusion(results["confusion"],
                                                  os.path.join(out_dir, "confusion.png"), list(names))
        write_results(results, results["json_path"])
    return results
