"""Save / Load / Checkpoint and the minidb format, against files written by real Caffe2
(tests/data/caffe2_reference/serialization, made by tools/gen_serialization_fixtures.py)."""
import json
import os

import numpy as np
import pytest
import torch

from food101.caffe2 import core, db as dbs, workspace
from food101.caffe2.blob_serialization import serialize_blob
from food101.caffe2.errors import Caffe2Error
from tests.support import reference_path

REF = reference_path("serialization")
NUMERIC = np.load(os.path.join(REF, "blobs.npz"))
with open(os.path.join(REF, "blobs_strings.json")) as fh:
    META = json.load(fh)
ORDER = META["order"]


def _feed_reference_blobs():
    for name in NUMERIC.files:
        workspace.FeedBlob(name, NUMERIC[name])
    workspace.FeedBlob("names", np.array([s.encode() for s in META["strings"]["names"]], dtype=object))
    workspace.FeedBlob("meta", META["raw"]["meta"].encode("latin-1"))


def _run(op_type, inputs, outputs, **args):
    workspace.RunOperatorOnce(core.CreateOperator(op_type, inputs, outputs, **args))


def _read(path):
    with open(path, "rb") as fh:
        return fh.read()


def test_minidb_written_by_real_caffe2_loads_every_dtype():
    _run("Load", [], [], db=os.path.join(REF, "dtypes.minidb"), db_type="minidb", absolute_path=1,
         load_all=1)
    assert sorted(workspace.Blobs()) == sorted(ORDER)
    for name in NUMERIC.files:
        value = workspace.FetchBlob(name)
        assert value.dtype == NUMERIC[name].dtype and value.shape == NUMERIC[name].shape, name
        np.testing.assert_array_equal(value, NUMERIC[name])
    assert list(workspace.FetchBlob("names")) == [s.encode() for s in META["strings"]["names"]]
    assert workspace.FetchBlob("meta") == META["raw"]["meta"].encode("latin-1")


def test_save_writes_the_same_bytes_as_real_caffe2(tmp_path):
    _feed_reference_blobs()
    out = str(tmp_path / "ours.minidb")
    _run("Save", ORDER, [], db=out, db_type="minidb", absolute_path=1)
    assert _read(out) == _read(os.path.join(REF, "dtypes.minidb"))


def test_chunked_tensors_from_real_caffe2_and_chunked_save_round_trip(tmp_path):
    _run("Load", [], ["ten", "empty"], db=os.path.join(REF, "chunked.minidb"), db_type="minidb",
         absolute_path=1)
    np.testing.assert_array_equal(workspace.FetchBlob("ten"), np.arange(10, dtype=np.float32))
    assert workspace.FetchBlob("empty").shape == (0, 3)
    # Real Caffe2 writes chunks from several threads: same records, any order.
    ours = str(tmp_path / "chunked.minidb")
    _run("Save", ["ten", "empty"], [], db=ours, db_type="minidb", absolute_path=1, chunk_size=4)
    cursor = dbs.create_db("minidb", ours, dbs.READ).new_cursor()
    theirs = dbs.create_db("minidb", os.path.join(REF, "chunked.minidb"), dbs.READ).new_cursor()
    records = lambda c: sorted(iter_records(c))  # noqa: E731
    assert records(cursor) == records(theirs)


def iter_records(cursor):
    cursor.seek_to_first()
    while cursor.valid():
        yield cursor.key(), cursor.value()
        cursor.next()


def test_checkpoint_every_and_pattern_like_real_caffe2(tmp_path):
    workspace.FeedBlob("f32", NUMERIC["f32"])
    pattern = str(tmp_path / "ckpt_%d.minidb")
    for it in range(1, 6):
        workspace.FeedBlob("iter", np.array([it], dtype=np.int64))
        _run("Checkpoint", ["iter", "f32"], [], db=pattern, db_type="minidb", every=2, absolute_path=1)
    assert sorted(os.listdir(tmp_path)) == ["ckpt_2.minidb", "ckpt_4.minidb"]
    assert _read(pattern % 4) == _read(os.path.join(REF, "ckpt_4.minidb"))


def test_prefixes_overrides_and_source_names(tmp_path):
    path = str(tmp_path / "p.minidb")
    workspace.FeedBlob("gpu_0/w", np.ones(3, np.float32))
    _run("Save", ["gpu_0/w"], [], db=path, db_type="minidb", absolute_path=1, strip_prefix="gpu_0/")
    _run("Load", [], ["gpu_1/w"], db=path, db_type="minidb", absolute_path=1, add_prefix="gpu_1/")
    np.testing.assert_array_equal(workspace.FetchBlob("gpu_1/w"), np.ones(3))
    _run("Load", [], ["renamed"], db=path, db_type="minidb", absolute_path=1, source_blob_names=["w"])
    np.testing.assert_array_equal(workspace.FetchBlob("renamed"), np.ones(3))
    _run("Save", ["renamed"], [], db=path, db_type="minidb", absolute_path=1, blob_name_overrides=["zz"])
    _run("Load", [], [], db=path, db_type="minidb", absolute_path=1, load_all=1, add_prefix="x/")
    assert workspace.HasBlob("x/zz")


def test_relative_db_is_under_the_root_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    workspace.FeedBlob("a", np.arange(3, dtype=np.float32))
    _run("Save", ["a"], [], db="rel.minidb", db_type="minidb")
    assert os.path.exists(tmp_path / "rel.minidb")
    workspace.ResetWorkspace()
    _run("Load", [], ["a"], db="rel.minidb", db_type="minidb")
    np.testing.assert_array_equal(workspace.FetchBlob("a"), np.arange(3))


def test_lmdb_round_trip_and_multiple_dbs(tmp_path):
    _feed_reference_blobs()
    _run("Save", ORDER[:4], [], db=str(tmp_path / "a.lmdb"), db_type="lmdb", absolute_path=1)
    _run("Save", ORDER[4:], [], db=str(tmp_path / "b.lmdb"), db_type="lmdb", absolute_path=1)
    workspace.ResetWorkspace()
    workspace.RunOperatorOnce(core.CreateOperator(
        "Load", [], [], dbs=[str(tmp_path / "a.lmdb"), str(tmp_path / "b.lmdb")], db_type="lmdb",
        absolute_path=1, load_all=1))
    for name in NUMERIC.files:
        np.testing.assert_array_equal(workspace.FetchBlob(name), NUMERIC[name])
    assert workspace.FetchBlob("meta") == META["raw"]["meta"].encode("latin-1")


def test_load_from_a_createdb_reader_twice():
    path = os.path.join(REF, "dtypes.minidb")
    _run("CreateDB", [], ["reader"], db=path, db_type="minidb")
    _run("Load", ["reader"], ["f32"])
    _run("Load", ["reader"], ["u8"])   # reads from the first record again
    np.testing.assert_array_equal(workspace.FetchBlob("u8"), NUMERIC["u8"])


def test_keep_device_and_op_device():
    path = os.path.join(REF, "dtypes.minidb")
    _run("Load", [], ["f32"], db=path, db_type="minidb", absolute_path=1, keep_device=1)
    assert workspace.FetchTensor("f32").device.type == "cpu"


def test_errors_name_the_blob_and_the_file(tmp_path):
    path = os.path.join(REF, "dtypes.minidb")
    with pytest.raises(Caffe2Error, match=r"1 are not in .*dtypes.minidb.*'nope'"):
        _run("Load", [], ["nope"], db=path, db_type="minidb", absolute_path=1)
    _run("Load", [], ["f32", "nope"], db=path, db_type="minidb", absolute_path=1, allow_incomplete=1)
    np.testing.assert_array_equal(workspace.FetchBlob("f32"), NUMERIC["f32"])
    with pytest.raises(Caffe2Error, match="does not exist"):
        _run("Load", [], ["x"], db=str(tmp_path / "missing.minidb"), db_type="minidb", absolute_path=1)
    with pytest.raises(Caffe2Error, match="needs the argument db_type"):
        _run("Load", [], ["x"], db=path, absolute_path=1)
    truncated = tmp_path / "truncated.minidb"
    truncated.write_bytes(_read(path)[:-5])
    with pytest.raises(Caffe2Error, match="truncated.minidb.*truncated"):
        _run("Load", [], [], db=str(truncated), db_type="minidb", absolute_path=1, load_all=1)
    workspace.FeedBlob("x", np.ones(2, np.float32))
    with pytest.raises(Caffe2Error, match="folder .* does not exist"):
        _run("Save", ["x"], [], db=str(tmp_path / "no" / "such.minidb"), db_type="minidb", absolute_path=1)
    with pytest.raises(Caffe2Error, match="bfloat16"):
        serialize_blob("h", torch.ones(2, dtype=torch.bfloat16))


def test_failed_save_leaves_the_old_file(tmp_path):
    path = str(tmp_path / "m.minidb")
    workspace.FeedBlob("a", np.ones(2, np.float32))
    _run("Save", ["a"], [], db=path, db_type="minidb", absolute_path=1)
    before = _read(path)
    _run("CreateDB", [], ["bad"], db=path, db_type="minidb")   # a reader is no tensor
    with pytest.raises(Caffe2Error, match="blob 'bad' holds a DBReader"):
        _run("Save", ["a", "bad"], [], db=path, db_type="minidb", absolute_path=1)
    assert _read(path) == before and os.listdir(tmp_path) == ["m.minidb"]


def test_tensor_protos_db_input_reads_minidb(tmp_path):
    from food101.caffe2.proto import caffe2_pb2, numpy_to_tensor
    path = str(tmp_path / "records.minidb")
    db = dbs.create_db("minidb", path, dbs.NEW)
    txn = db.new_transaction()
    for i in range(3):
        protos = caffe2_pb2.TensorProtos(protos=[numpy_to_tensor(np.full((2, 2), i, np.float32)),
                                                 numpy_to_tensor(np.array(i, np.int32))])
        txn.put("%d" % i, protos.SerializeToString())
    txn.commit()
    db.close()
    _run("CreateDB", [], ["reader"], db=path, db_type="minidb")
    net = core.Net("read")
    net.TensorProtosDBInput(["reader"], ["data", "label"], batch_size=2)
    workspace.CreateNet(net)
    workspace.RunNet(net)
    workspace.RunNet(net)
    np.testing.assert_array_equal(workspace.FetchBlob("label"), [2, 0])   # wraps around
    assert workspace.FetchBlob("data").shape == (2, 2, 2)


def test_db_exists(tmp_path):
    path = os.path.join(REF, "dtypes.minidb")
    _run("DBExists", [], ["yes"], db_name=path, db_type="minidb", absolute_path=1)
    _run("DBExists", [], ["no"], db_name=str(tmp_path / "none.minidb"), db_type="minidb", absolute_path=1)
    assert workspace.FetchBlob("yes") and not workspace.FetchBlob("no")
