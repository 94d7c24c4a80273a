"""The ETH Food-101 folder layout: parsing and validation.

    food-101/
      images/<class>/<id>.jpg        one folder per class
      meta/classes.txt               class folder names, one a line; line i is label i
      meta/labels.txt                human-readable names, same order (optional here)
      meta/train.txt, meta/test.txt  "<class>/<id>" lines (no extension)

`Food101Layout.items(split)` checks everything a build needs before anything is written: every
class named in classes.txt has a folder, every split line names a known class and an existing
file, no line is repeated. All problems are collected and raised together as one `LayoutError`,
so a broken download is diagnosed in one run. Whether a file *decodes* is not checked here (that
needs the decoder and is reported per file by the writer, which skips bad files).
"""
import os
from dataclasses import dataclass

# Version of the source layout this parser understands (stored in each LMDB's metadata).
LAYOUT_VERSION = "food-101/1"
SPLITS = ("train", "test")
IMAGE_EXTENSION = ".jpg"


class LayoutError(ValueError):
    """The dataset folder does not have the Food-101 layout (all problems listed)."""


@dataclass(frozen=True)
class Item:
    """One image of a split: `image_id` is the meta line ("apple_pie/1005649")."""
    image_id: str
    path: str
    label: int

    @property
    def class_name(self):
        return self.image_id.split("/", 1)[0]


def _read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


class Food101Layout:
    """A Food-101 style dataset rooted at `root`."""

    def __init__(self, root):
        self.root = os.path.abspath(root)
        self.images_dir = os.path.join(self.root, "images")
        self.meta_dir = os.path.join(self.root, "meta")
        problems = []
        if not os.path.isdir(self.root):
            raise LayoutError("dataset root %r does not exist" % root)
        if not os.path.isdir(self.images_dir):
            problems.append("missing folder %s" % self.images_dir)
        classes_file = os.path.join(self.meta_dir, "classes.txt")
        if not os.path.isfile(classes_file):
            problems.append("missing %s" % classes_file)
        if problems:
            raise LayoutError("%s is not a Food-101 layout:\n  %s" % (root, "\n  ".join(problems)))
        self.classes = _read_lines(classes_file)
        if not self.classes:
            raise LayoutError("%s lists no classes" % classes_file)
        dup = sorted({c for c in self.classes if self.classes.count(c) > 1})
        if dup:
            raise LayoutError("%s lists classes twice: %s" % (classes_file, ", ".join(dup)))
        labels_file = os.path.join(self.meta_dir, "labels.txt")
        self.labels = _read_lines(labels_file) if os.path.isfile(labels_file) else list(self.classes)
        if len(self.labels) != len(self.classes):
            raise LayoutError("%s has %d lines but classes.txt has %d"
                              % (labels_file, len(self.labels), len(self.classes)))

    def split_file(self, split):
        if split not in SPLITS:
            raise ValueError("split must be one of %s, got %r" % (", ".join(SPLITS), split))
        return os.path.join(self.meta_dir, split + ".txt")

    def items(self, split, classes=None, limit_per_class=None):
        """The split's images as `Item`s, in meta-file order, after full validation.

        `classes` (names) selects a subset; labels are then indices into that subset, taken in
        classes.txt order (the stored class list says which). `limit_per_class` keeps the
        first K lines of each class."""
        selected = self.select_classes(classes)
        label_of = {c: i for i, c in enumerate(selected)}
        problems = []
        for c in selected:
            if not os.path.isdir(os.path.join(self.images_dir, c)):
                problems.append("class %r (meta/classes.txt) has no folder images/%s/" % (c, c))
        split_path = self.split_file(split)
        if not os.path.isfile(split_path):
            problems.append("missing %s" % split_path)
        if problems:
            raise LayoutError(self._problem_text(problems))

        listing = {}  # class -> file names present, one listdir per class instead of a stat per line
        seen = set()
        per_class = {}
        items = []
        known = set(self.classes)
        for lineno, line in enumerate(_read_lines(split_path), 1):
            image_id = line[:-len(IMAGE_EXTENSION)] if line.endswith(IMAGE_EXTENSION) else line
            cls, sep, name = image_id.partition("/")
            where = "meta/%s.txt line %d (%r)" % (split, lineno, line)
            if not sep or not name or "/" in name:
                problems.append("%s: expected '<class>/<id>'" % where)
                continue
            if cls not in known:
                hint = [c for c in self.classes if c.startswith(cls[:3])][:3]
                problems.append("%s: class %r is not in meta/classes.txt%s"
                                % (where, cls, " (similar: %s)" % ", ".join(hint) if hint else ""))
                continue
            if cls not in label_of:
                continue
            if image_id in seen:
                problems.append("%s: %s is listed twice" % (where, image_id))
                continue
            seen.add(image_id)
            if limit_per_class is not None and per_class.get(cls, 0) >= limit_per_class:
                continue
            if cls not in listing:
                listing[cls] = set(os.listdir(os.path.join(self.images_dir, cls)))
            filename = name + IMAGE_EXTENSION
            if filename not in listing[cls]:
                problems.append("%s: no file images/%s/%s" % (where, cls, filename))
                continue
            per_class[cls] = per_class.get(cls, 0) + 1
            items.append(Item(image_id, os.path.join(self.images_dir, cls, filename), label_of[cls]))
        if problems:
            raise LayoutError(self._problem_text(problems))
        empty = [c for c in selected if not per_class.get(c)]
        if len(empty) == len(selected):
            raise LayoutError("meta/%s.txt lists no images of the selected classes" % split)
        return items

    def select_classes(self, classes=None):
        """Validated subset of class names in classes.txt order (all classes when None)."""
        if classes is None:
            return list(self.classes)
        wanted = [c.strip() for c in classes if c.strip()]
        unknown = [c for c in wanted if c not in self.classes]
        if unknown:
            import difflib
            hints = ["%r (did you mean %s?)" % (c, ", ".join(difflib.get_close_matches(c, self.classes, 3)) or "-")
                     for c in unknown]
            raise LayoutError("unknown classes: %s" % "; ".join(hints))
        if not wanted:
            raise LayoutError("no classes selected")
        wanted = set(wanted)
        return [c for c in self.classes if c in wanted]

    def _problem_text(self, problems, shown=20):
        text = "%s: %d problem(s) in the Food-101 layout, nothing was written:\n  %s" % (
            self.root, len(problems), "\n  ".join(problems[:shown]))
        if len(problems) > shown:
            text += "\n  ... and %d more" % (len(problems) - shown)
        return text
