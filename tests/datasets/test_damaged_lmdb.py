"""Damaged LMDBs get a clear error naming the file, never a signal (#16 items 2 and 7).

A truncated data.mdb used to kill check_lmdb with SIGBUS (exit 135, no message); a byte-
corrupted one gave a raw lmdb.CorruptedError traceback; an empty folder said "No such file or
directory"; a float LMDB of NaN records passed check_lmdb; --strict printed OK and exited 1."""
import os
import subprocess
import sys

import pytest

from food101.data import LMDBReader, build_lmdb, check_lmdb
from food101.data.synthetic import make_demo_dataset
from food101.data.lmdb_file import DatabaseError, validate
from tests.support import TOOLS
from tests.support.damage import corrupted_copy, float_copy, truncated_copy


@pytest.fixture(scope="module")
def good_lmdb(tmp_path_factory):
    base = tmp_path_factory.mktemp("lmdbs")
    demo = make_demo_dataset(str(base / "d"), train_per_class=12, test_per_class=0, max_side=48)
    # 40-pixel records: 4.8 KB each, so records spill into overflow pages as big images do
    return build_lmdb(demo.root, "train", str(base / "db"), size=40, workers=0, progress=False).out


def _tool(*args):
    return subprocess.run([sys.executable, os.path.join(TOOLS, "check_lmdb.py"), *args,
                           "--no-progress"], capture_output=True, text=True, timeout=120)


def _no_crash(result):
    assert result.returncode in (0, 1, 2), (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr


def test_truncated_data_file_is_named_not_a_sigbus(good_lmdb, tmp_path):
    size = os.path.getsize(os.path.join(good_lmdb, "data.mdb"))
    bad = truncated_copy(good_lmdb, str(tmp_path / "cut"), size // 3)
    result = _tool(bad)
    _no_crash(result)
    assert result.returncode == 2
    assert "data.mdb is truncated" in result.stderr and "%d bytes" % (size // 3) in result.stderr
    with pytest.raises(DatabaseError, match="truncated"):
        LMDBReader(bad, 4)
    with pytest.raises(DatabaseError, match="truncated"):
        check_lmdb(bad)


@pytest.mark.parametrize("cut", [0, 100, 4096, 4096 + 200])
def test_data_file_cut_inside_the_meta_pages(good_lmdb, tmp_path, cut):
    bad = truncated_copy(good_lmdb, str(tmp_path / "cut"), cut)
    with pytest.raises(DatabaseError, match="data.mdb"):
        validate(bad)
    _no_crash(_tool(bad))


def test_corrupted_pages_give_one_message_naming_the_file(good_lmdb, tmp_path):
    outcomes = set()
    for page in (2, 3, 4, 5):     # the B-tree's branch/leaf pages and the first overflow pages
        bad = corrupted_copy(good_lmdb, str(tmp_path / ("c%d" % page)), 4096 * page + 8, 256,
                             seed=page)
        result = _tool(bad)
        _no_crash(result)
        outcomes.add(result.returncode)
        if result.returncode == 2:
            assert "data.mdb" in result.stderr or "record" in result.stderr
        try:
            with LMDBReader(bad, 8) as reader:
                for _ in reader:
                    pass
        except DatabaseError as e:
            assert "data.mdb" in str(e)
        except ValueError as e:      # a record that parses wrongly: RecordError names it
            assert "record" in str(e)
    assert outcomes & {1, 2}, "some corruption must be noticed"


def test_empty_folder_is_not_no_such_file(tmp_path):
    empty = tmp_path / "empty_lmdb"
    empty.mkdir()
    result = _tool(str(empty))
    assert result.returncode == 2
    assert "No such file" not in result.stderr
    assert "not an LMDB: the folder has no data.mdb (it is empty)" in result.stderr
    missing = _tool(str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_not_an_lmdb_file(tmp_path):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "data.mdb").write_bytes(b"hello" * 5000)
    result = _tool(str(junk))
    assert result.returncode == 2 and "not an LMDB data file" in result.stderr


def test_nan_records_are_problems(good_lmdb, tmp_path):
    poisoned = float_copy(good_lmdb, str(tmp_path / "nan"), poison=range(0, 72, 9))
    report = check_lmdb(str(tmp_path / "nan"))
    assert not report.ok and report.nonfinite_records == len(poisoned) == 8
    assert all(any(k.decode() in p and "NaN" in p for p in report.problems) for k in poisoned)
    result = _tool(str(tmp_path / "nan"))
    assert result.returncode == 1 and "FAILED: 8 problem(s)" in result.stdout
    assert "\nOK" not in result.stdout


def test_strict_verdict_and_exit_code_agree(good_lmdb):
    result = _tool(good_lmdb, "--strict", "--num-classes", "101")
    assert result.returncode == 1
    assert "FAILED (--strict)" in result.stdout and "\nOK" not in result.stdout
    assert "95 class(es) without records" in result.stdout
    relaxed = _tool(good_lmdb, "--num-classes", "101")
    assert relaxed.returncode == 0 and "OK (1 warning(s))" in relaxed.stdout


def test_non_utf8_keys_are_named_as_escaped_text(tmp_path):
    import lmdb
    import numpy as np
    from food101.data import encode_record
    path = str(tmp_path / "odd_keys")
    env = lmdb.open(path, map_size=1 << 22)
    image = np.random.default_rng(0).integers(0, 256, (3, 8, 8), dtype=np.uint8)
    with env.begin(write=True) as txn:
        txn.put(b"00000000_caf\xe9/1", encode_record(image, 0))
        txn.put(b"00000001_caf\xe9/1", encode_record(image.copy(), 1))   # same source, same image
        txn.put(b"00000002_\xff\xfe", b"not a record")
    env.close()
    report = check_lmdb(path, num_classes=2)
    text = "\n".join(report.problems)
    assert "duplicate source caf\\xe9/1 in keys 00000000_caf\\xe9/1 and 00000001_caf\\xe9/1" in text
    assert "record '00000002_\\xff\\xfe'" in text
    result = _tool(path, "--num-classes", "2")
    assert result.returncode == 1 and "Traceback" not in result.stderr
