"""The demo dataset generator: layout, determinism, distinct classes, the broken files, CMYK."""
import os

import cv2
import numpy as np
import pytest

from food101.data.decode import jpeg_components
from food101.data.synthetic import BROKEN_FILES, encode_cmyk_jpeg, make_demo_dataset
from food101.data.layout import Food101Layout
from tests.support import REPO


def _tree(root):
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            out[os.path.relpath(path, root)] = open(path, "rb").read()
    return out


def test_layout_counts_and_sizes(tmp_path):
    demo = make_demo_dataset(str(tmp_path / "d"), train_per_class=5, test_per_class=2, max_side=120)
    layout = Food101Layout(demo.root)
    assert layout.classes == demo.classes and len(demo.classes) == 6
    all_classes = open(os.path.join(REPO, "models", "food101", "classes.txt")).read().split()
    assert set(demo.classes) <= set(all_classes)        # real Food-101 class names
    train, test = layout.items("train"), layout.items("test")
    assert len(train) == 30 and len(test) == 12
    assert not {i.image_id for i in train} & {i.image_id for i in test}
    shapes = set()
    for item in train + test:
        image = cv2.imread(item.path, cv2.IMREAD_COLOR)
        assert image is not None and max(image.shape[:2]) <= 120
        shapes.add(image.shape)
    assert len(shapes) > 5                              # varying sizes and aspect ratios


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = make_demo_dataset(str(tmp_path / "a"), train_per_class=2, test_per_class=1, max_side=64, seed=3)
    b = make_demo_dataset(str(tmp_path / "b"), train_per_class=2, test_per_class=1, max_side=64, seed=3)
    c = make_demo_dataset(str(tmp_path / "c"), train_per_class=2, test_per_class=1, max_side=64, seed=4)
    assert _tree(a.root) == _tree(b.root)
    assert _tree(a.root) != _tree(c.root)


def test_refuses_to_overwrite(tmp_path):
    make_demo_dataset(str(tmp_path / "d"), train_per_class=1, test_per_class=0, max_side=64)
    with pytest.raises(FileExistsError):
        make_demo_dataset(str(tmp_path / "d"), train_per_class=1, test_per_class=0, max_side=64)


def test_classes_differ_in_colour(tmp_path):
    """A sanity check that the classes are separable: mean colours differ between classes
    more than within them (a convnet gets shapes and textures on top)."""
    demo = make_demo_dataset(str(tmp_path / "d"), train_per_class=8, test_per_class=0, max_side=96)
    means = {}
    for item in Food101Layout(demo.root).items("train"):
        means.setdefault(item.class_name, []).append(cv2.imread(item.path).reshape(-1, 3).mean(0))
    centres = {c: np.mean(v, 0) for c, v in means.items()}
    nearest_ok = 0
    for c, vectors in means.items():
        for v in vectors:
            nearest = min(centres, key=lambda k: np.linalg.norm(v - centres[k]))
            nearest_ok += nearest == c
    assert nearest_ok / sum(map(len, means.values())) > 0.75


def test_broken_files(tmp_path):
    demo = make_demo_dataset(str(tmp_path / "d"), train_per_class=2, test_per_class=1, max_side=96,
                             with_broken=True)
    assert len(demo.broken) == len(BROKEN_FILES)
    train_lines = open(os.path.join(demo.root, "meta", "train.txt")).read().split()
    kinds = {}
    for image_id, (kind, handling) in demo.broken.items():
        assert image_id in train_lines
        kinds[kind] = open(os.path.join(demo.root, "images", image_id + ".jpg"), "rb").read()
    assert kinds["zero_byte"] == b""
    assert kinds["truncated_jpeg"].startswith(b"\xff\xd8") and b"\xff\xd9" not in kinds["truncated_jpeg"][-2:]
    assert not kinds["text_as_jpeg"].startswith(b"\xff\xd8")
    assert jpeg_components(kinds["grayscale_jpeg"]) == 1
    assert jpeg_components(kinds["cmyk_jpeg"]) == 4


def test_cmyk_encoder_decodes_losslessly_in_opencv():
    rng = np.random.default_rng(0)
    cmyk = rng.integers(0, 256, (3, 5, 4)).astype(np.uint8)
    data = encode_cmyk_jpeg(cmyk)
    assert jpeg_components(data) == 4 and b"Adobe" in data[:40]
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert bgr.shape == (24, 40, 3)
    # OpenCV reads Adobe (inverted) CMYK as: channel = k - (255 - ink) * k / 256
    c, m, y, k = (cmyk[..., i].astype(np.int32) for i in range(4))
    expected = np.stack([k - ((255 - y) * k >> 8), k - ((255 - m) * k >> 8), k - ((255 - c) * k >> 8)], -1)
    expected = np.repeat(np.repeat(expected, 8, 0), 8, 1)
    assert np.abs(bgr.astype(np.int32) - expected).max() <= 1
