"""check_lmdb / tools/check_lmdb.py: a clean database passes; each kind of problem is reported."""
import os
import subprocess
import sys

import lmdb
import numpy as np

from food101.data import build_lmdb, check_lmdb, encode_record
from food101.data.synthetic import make_demo_dataset
from tests.support import REFERENCE, REPO

ROOT = REPO
FIXTURE = os.path.join(REFERENCE, "lmdb", "tensorprotos_byte.lmdb")


def _write(path, values):
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for key, value in values:
            txn.put(key, value)
    env.close()
    return str(path)


def _image(seed, shape=(3, 8, 8)):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def _tool(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "check_lmdb.py"), *args, "--no-progress"],
                          capture_output=True, text=True)


def test_built_database_passes(tmp_path):
    demo = make_demo_dataset(str(tmp_path / "d"), train_per_class=3, test_per_class=0, max_side=48)
    out = build_lmdb(demo.root, "train", str(tmp_path / "db"), size=16, workers=0, progress=False).out
    report = check_lmdb(out)
    assert report.ok and report.num_records == 18 and report.num_classes == 6
    assert dict(report.label_counts) == {i: 3 for i in range(6)}
    assert "OK" in report.format() and "3 (0 apple_pie)" in report.format()
    result = _tool(out)
    assert result.returncode == 0 and "18 records" in result.stdout


def test_caffe2_fixture_passes():
    report = check_lmdb(FIXTURE)
    assert report.ok and report.num_records == 12 and report.num_classes is None


def test_every_kind_of_problem_is_reported(tmp_path):
    dup = _image(1)
    path = _write(tmp_path / "bad", [
        (b"00000000_pizza/1", encode_record(_image(0), 0)),
        (b"00000001_pizza/2", encode_record(dup, 1)),
        (b"00000002_sushi/3", encode_record(dup.copy(), 1)),            # identical content
        (b"00000003_pizza/1", encode_record(_image(3), 0)),             # same source image twice
        (b"00000004_ramen/5", encode_record(_image(4), 7)),             # label out of range
        (b"00000005_ramen/6", encode_record(np.full((3, 8, 8), 128, np.uint8), 2)),   # constant
        (b"00000006_ramen/7", encode_record(_image(6, (3, 9, 8)), 2)),  # another shape
        (b"00000007_ramen/8", b"not a protobuf at all"),
        (b"00000008_ramen/9", encode_record(_image(8) // 40, 2)),       # nearly black: a warning
    ])
    report = check_lmdb(path, num_classes=3)
    text = "\n".join(report.problems)
    assert not report.ok
    assert "identical images in 00000001_pizza/2 (from pizza/2) and 00000002_sushi/3" in text
    assert "duplicate source pizza/1 in keys 00000000_pizza/1 and 00000003_pizza/1" in text
    assert "label 7 out of range [0, 3) in 00000004_ramen/5" in text
    assert "constant image (every value 128) in 00000005_ramen/6" in text
    assert "2 different shapes" in text
    assert "undecodable:" in text and "record '00000007_ramen/8'" in text
    assert any("nearly black" in w and "00000008_ramen/9" in w for w in report.warnings)
    result = _tool(path, "--num-classes", "3")
    assert result.returncode == 1 and "FAILED" in result.stdout


def test_warnings_fail_only_with_strict(tmp_path):
    path = _write(tmp_path / "dark", [(b"a", encode_record(_image(0) // 64, 0)),
                                      (b"b", encode_record(_image(1), 1))])
    assert check_lmdb(path).ok
    assert _tool(path).returncode == 0
    assert _tool(path, "--strict").returncode == 1
    assert _tool(str(tmp_path / "missing")).returncode == 2


def test_metadata_disagreement_is_a_problem(tmp_path):
    import json
    demo = make_demo_dataset(str(tmp_path / "d"), train_per_class=2, test_per_class=0, max_side=48)
    out = build_lmdb(demo.root, "train", str(tmp_path / "db"), size=16, workers=0, progress=False).out
    meta_path = os.path.join(out, "food101_meta.json")
    meta = json.load(open(meta_path))
    meta["num_records"] = 99
    meta["per_class_counts"]["pizza"] = 5
    json.dump(meta, open(meta_path, "w"))
    text = "\n".join(check_lmdb(out).problems)
    assert "metadata says 99 records, the database holds 12" in text
    assert "metadata counts 5 records of pizza, the database holds 2" in text
