"""Scanning an LMDB of [image, label] records for problems before training on it.

Every record is decoded and checked:
- decodability: the value parses as a Caffe2 TensorProtos of an image and one integer label;
- consistency: one image shape and dtype across the database (a batch needs one);
- labels: none negative, none at or above the number of classes (from the metadata or given);
- duplicates: two keys naming the same source image, or byte-identical images;
- per-class counts (compared with the builder's metadata when there is one);
- values: NaN or Inf in a float image (one such record turns a training loss into NaN);
- constant images (every pixel equal: typical of a failed decode padded with grey) and, as
  warnings, nearly black or white ones.

`check_lmdb` returns a `CheckReport`; problems make `ok` False (tools/check_lmdb.py exits 1),
warnings only with `strict`. The printed verdict and `ok` are the same decision.
A damaged data file (truncated, corrupted pages) raises `lmdb_file.DatabaseError`.
"""
import collections
import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from food101.data import lmdb_file
from food101.data.reader import open_env, release_env
from food101.data.records import RecordDecoder, RecordError, key_source, key_text
from food101.data.writer import read_metadata


@dataclass
class CheckReport:
    path: str
    num_records: int = 0
    shapes: collections.Counter = field(default_factory=collections.Counter)   # (dtype, shape) -> n
    label_counts: collections.Counter = field(default_factory=collections.Counter)
    num_classes: int = None
    classes: list = None
    problems: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    notes: list = field(default_factory=list)        # what could not be checked, and why
    strict: bool = False                             # warnings fail the check too
    nonfinite_records: int = 0

    @property
    def ok(self):
        return not self.problems and not (self.strict and self.warnings)

    def format(self, limit=20):
        lines = ["%s: %d records" % (self.path, self.num_records)]
        for (dtype, shape), n in self.shapes.most_common():
            lines.append("  images %s %s: %d" % (dtype, list(shape), n))
        if self.label_counts:
            lines.append("  labels %d..%d over %d classes%s" % (
                min(self.label_counts), max(self.label_counts), len(self.label_counts),
                " (of %d)" % self.num_classes if self.num_classes else ""))
            counts = [(self.label_counts.get(i, 0), i) for i in sorted(self.label_counts)]
            low, high = min(counts), max(counts)
            lines.append("  per class: min %d (%s), max %d (%s)" % (
                low[0], self._name(low[1]), high[0], self._name(high[1])))
        for title, items in (("PROBLEMS", self.problems), ("warnings", self.warnings)):
            if items:
                lines.append("%s (%d):" % (title, len(items)))
                lines.extend("  " + p for p in items[:limit])
                if len(items) > limit:
                    lines.append("  ... and %d more" % (len(items) - limit))
        lines.extend("  note: " + n for n in self.notes)
        if self.ok:
            lines.append("OK" + (" (%d warning(s))" % len(self.warnings) if self.warnings else ""))
        elif self.problems:
            lines.append("FAILED: %d problem(s)%s" % (len(self.problems), ", %d warning(s)" % len(
                self.warnings) if self.warnings else ""))
        else:
            lines.append("FAILED (--strict): %d warning(s)" % len(self.warnings))
        return "\n".join(lines)

    def _name(self, label):
        if self.classes and 0 <= label < len(self.classes):
            return "%d %s" % (label, self.classes[label])
        return str(label)


def _describe(key):
    text = key_text(key)
    source = key_source(key)
    return "%s (from %s)" % (text, source) if source else text


def check_lmdb(path, *, num_classes=None, dark=8.0, bright=247.0, progress=False, strict=False):
    """Scan every record of the LMDB at `path`; see the module docstring."""
    report = CheckReport(path=path, strict=strict)
    meta = read_metadata(path)
    if meta:
        report.classes = meta.get("classes")
        num_classes = num_classes or meta.get("num_classes")
    report.num_classes = num_classes
    decoder = RecordDecoder(path)
    sources = {}
    digests = {}
    env = open_env(path)
    file_size = os.path.getsize(lmdb_file.data_file(path))
    try:
        from tqdm import tqdm
        with lmdb_file.errors_named(path), env.begin(buffers=True) as txn, \
                tqdm(total=env.stat()["entries"], unit="rec", disable=not progress) as bar:
            for key, buf in txn.cursor():
                key = bytes(key)
                bar.update(1)
                report.num_records += 1
                lmdb_file.check_value_size(path, key, buf, file_size)
                try:
                    image, label = decoder.decode(key, buf)
                except RecordError as e:
                    report.problems.append("undecodable: %s" % e)
                    continue
                report.shapes[(str(image.dtype), tuple(image.shape))] += 1
                report.label_counts[label] += 1
                if image.dtype.kind == "f":
                    finite = np.isfinite(image)
                    if not finite.all():
                        report.nonfinite_records += 1
                        bad = int(finite.size - finite.sum())
                        nan = int(np.isnan(image).sum())
                        report.problems.append("%d non-finite values (%d NaN, %d Inf) in %s" % (
                            bad, nan, bad - nan, _describe(key)))
                        continue
                if label < 0 or (num_classes and label >= num_classes):
                    report.problems.append("label %d out of range [0, %s) in %s" % (
                        label, num_classes or "?", _describe(key)))
                source = key_source(key)
                if source is not None:
                    if source in sources:
                        report.problems.append("duplicate source %s in keys %s and %s" % (
                            source, key_text(sources[source]), key_text(key)))
                    else:
                        sources[source] = key
                digest = hashlib.blake2b(image.data, digest_size=16).digest()
                if digest in digests:
                    report.problems.append("identical images in %s and %s" % (
                        _describe(digests[digest]), _describe(key)))
                else:
                    digests[digest] = key
                low, high = image.min(), image.max()
                if low == high:
                    report.problems.append("constant image (every value %s) in %s" % (low, _describe(key)))
                    continue
                mean = float(image.mean())
                if mean < dark or mean > bright:
                    report.warnings.append("%s image (mean %.1f) in %s" % (
                        "nearly black" if mean < dark else "nearly white", mean, _describe(key)))
    finally:
        release_env(env)
    if len(report.shapes) > 1:
        report.problems.append("images of %d different shapes/dtypes: %s" % (
            len(report.shapes), ", ".join("%s %s x%d" % (d, list(s), n) for (d, s), n in report.shapes.items())))
    if not num_classes and report.label_counts:
        report.notes.append("labels not checked against a class count (no builder metadata): "
                            "pass --num-classes N")
    if num_classes:
        empty = [i for i in range(num_classes) if not report.label_counts.get(i)]
        if empty:
            report.warnings.append("%d class(es) without records: %s" % (
                len(empty), ", ".join(report._name(i) for i in empty[:10])))
    if meta:
        _compare_with_metadata(report, meta)
    return report


def _compare_with_metadata(report, meta):
    if meta.get("num_records") is not None and meta["num_records"] != report.num_records:
        report.problems.append("metadata says %d records, the database holds %d"
                               % (meta["num_records"], report.num_records))
    dims = meta.get("image", {}).get("dims")
    if dims and report.shapes:
        shape = tuple(report.shapes.most_common(1)[0][0][1])
        if tuple(dims) != shape:
            report.problems.append("metadata says images are %s, the records are %s" % (dims, list(shape)))
    per_class = meta.get("per_class_counts") or {}
    classes = meta.get("classes") or []
    for label, name in enumerate(classes):
        expected, found = per_class.get(name), report.label_counts.get(label, 0)
        if expected is not None and expected != found:
            report.problems.append("metadata counts %d records of %s, the database holds %d"
                                   % (expected, name, found))

