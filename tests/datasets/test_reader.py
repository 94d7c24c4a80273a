"""LMDBReader: Caffe2's own LMDBs (BYTE and FLOAT), batches, shuffling, sharding, resuming,
prefetching, transforms, malformed records."""
import os

import lmdb
import numpy as np
import pytest
import torch

from food101.data import LMDBReader, RecordError, build_lmdb, encode_record
from food101.data.synthetic import make_demo_dataset
from tests.support import REFERENCE

FIXTURES = os.path.join(REFERENCE, "lmdb")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "food"
    make_demo_dataset(str(root), train_per_class=5, test_per_class=1, max_side=64)
    out = str(tmp_path_factory.mktemp("lmdb") / "train_lmdb")
    build_lmdb(str(root), "train", out, size=24, workers=0, progress=False)
    return out


def _write(path, values):
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for key, value in values:
            txn.put(key, value)
    env.close()
    return str(path)


@pytest.mark.parametrize("variant, dtype", [("byte", np.uint8), ("float", np.float32)])
def test_caffe2_fixture_lmdbs(variant, dtype):
    path = os.path.join(FIXTURES, "tensorprotos_%s.lmdb" % variant)
    expected = np.load(path + ".expected.npz")
    with LMDBReader(path, batch_size=5) as reader:
        assert reader.num_records == 12 and reader.image_shape == (3, 8, 6) and reader.meta is None
        batches = list(reader)
    assert [len(b[0]) for b in batches] == [5, 5, 2]
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    assert images.dtype == dtype and labels.dtype == np.int32
    np.testing.assert_array_equal(images, expected["images"])
    np.testing.assert_array_equal(labels, expected["labels"])


def test_epoch_shuffling_is_seeded_and_changes_per_epoch(built):
    def labels_of_epochs(seed, epochs=2):
        with LMDBReader(built, 7, shuffle=True, seed=seed) as reader:
            return [np.concatenate([b[1] for b in reader]) for _ in range(epochs)], reader.epoch
    (e0, e1), epoch = labels_of_epochs(1)
    (f0, f1), _ = labels_of_epochs(1)
    (g0, _), _ = labels_of_epochs(2)
    assert epoch == 2 and len(e0) == 30
    np.testing.assert_array_equal(e0, f0)
    np.testing.assert_array_equal(e1, f1)
    assert not np.array_equal(e0, e1) and not np.array_equal(e0, g0)
    assert sorted(e0) == sorted(e1)


def _key_order(reader, epochs=1):
    orders = [reader.epoch_order(e) for e in range(epochs)]
    return [reader.keys[i] for o in orders for i in o]


def test_sharding_splits_each_epoch_between_ranks(built):
    for shuffle in (False, True):
        readers = [LMDBReader(built, 4, shuffle=shuffle, seed=3, rank=r, world_size=3) for r in range(3)]
        seen = [set(_key_order(r)) for r in readers]
        assert not (seen[0] & seen[1]) and not (seen[1] & seen[2]) and not (seen[0] & seen[2])
        assert sum(map(len, seen)) == 30
        assert len({len(r) for r in readers}) == 1            # ranks step in lockstep
        for r in readers:
            r.close()
    with pytest.raises(ValueError, match="rank 3"):
        LMDBReader(built, 4, rank=3, world_size=3)


def test_drop_last_and_len(built):
    with LMDBReader(built, 8, drop_last=True) as reader:
        assert len(reader) == 3 and [len(b[0]) for b in reader] == [8, 8, 8]
    with LMDBReader(built, 8) as reader:
        assert len(reader) == 4 and [len(b[0]) for b in reader] == [8, 8, 8, 6]


def test_stream_crosses_epochs_with_full_batches(built):
    with LMDBReader(built, 8, shuffle=True, seed=0) as reader:
        labels = np.concatenate([reader.next_batch()[1] for _ in range(8)])   # 64 = 2 epochs + 4
        assert reader.state_dict()["epoch"] == 2 and reader.state_dict()["position"] == 4
        epoch0 = [reader.read(i)[1] for i in reader.epoch_order(0)]
        epoch1 = [reader.read(i)[1] for i in reader.epoch_order(1)]
    np.testing.assert_array_equal(labels[:30], epoch0)
    np.testing.assert_array_equal(labels[30:60], epoch1)


@pytest.mark.parametrize("threads", [0, 2])
def test_resume_from_state_dict_gives_the_same_batches(built, threads):
    with LMDBReader(built, 7, shuffle=True, seed=9, num_threads=threads) as reader:
        for _ in range(6):
            reader.next_batch()
        state = reader.state_dict()
        expected = [reader.next_batch() for _ in range(5)]
    with LMDBReader(built, 7, shuffle=True, seed=9, num_threads=threads) as resumed:
        resumed.load_state_dict(state)
        got = [resumed.next_batch() for _ in range(5)]
    for (a, la), (b, lb) in zip(expected, got):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    with LMDBReader(built, 7, shuffle=True, seed=10) as other, pytest.raises(ValueError, match="seed"):
        other.load_state_dict(state)


def test_prefetch_threads_give_the_same_data(built):
    def run(threads, prefetch):
        with LMDBReader(built, 4, shuffle=True, seed=1, num_threads=threads, prefetch=prefetch) as r:
            return [np.array(b[0]) for _ in range(2) for b in r]
    serial = run(0, 1)
    for threads, prefetch in ((1, 1), (2, 4)):
        for a, b in zip(serial, run(threads, prefetch)):
            np.testing.assert_array_equal(a, b)


def test_held_batches_are_never_recycled(built):
    with LMDBReader(built, 5, num_threads=2, prefetch=2) as reader:
        held = [(b[0], b[0].copy()) for _ in range(3) for b in reader]
        tensor = torch.from_numpy(next(iter(reader))[0])
        snapshot = tensor.clone()
        for _ in range(3):
            list(reader)
    for batch, copy in held:
        np.testing.assert_array_equal(batch, copy)
    assert torch.equal(tensor, snapshot)


def test_transform_runs_per_batch_with_a_reproducible_generator(built):
    def transform(images, labels, generator):
        return images.mean(), torch.rand(3, generator=generator)
    with LMDBReader(built, 6, shuffle=True, transform=transform, num_threads=2) as a:
        first = [list(a) for _ in range(2)]
    with LMDBReader(built, 6, shuffle=True, transform=transform, num_threads=0) as b:
        second = [list(b) for _ in range(2)]
    flat = [x for epoch in first for x in epoch]
    assert all(torch.equal(x[1], y[1]) and x[0] == y[0] for x, y in zip(flat, [y for e in second for y in e]))
    assert not torch.equal(flat[0][1], flat[1][1])


def test_two_readers_of_one_database(built):
    a, b = LMDBReader(built, 3), LMDBReader(built, 3)
    np.testing.assert_array_equal(next(iter(a))[0], next(iter(b))[0])
    a.close()
    assert len(next(iter(b))[0]) == 3       # the shared environment stays open for b
    b.close()


def test_malformed_record_names_path_and_key(tmp_path):
    good = encode_record(np.zeros((3, 4, 4), np.uint8), 1)
    path = _write(tmp_path / "bad", [(b"00000000", good), (b"00000001", b"\x0a\x05garbage!"),
                                     (b"00000002", good)])
    with LMDBReader(path, 3) as reader:
        with pytest.raises(RecordError, match=r"bad: record '00000001': neither a Caffe2 TensorProtos"):
            next(iter(reader))


def test_records_of_another_shape_or_without_label(tmp_path):
    from food101.caffe2.proto import caffe2_pb2
    only_image = caffe2_pb2.TensorProtos()
    t = only_image.protos.add()
    t.dims.extend([3, 4, 4])
    t.data_type = caffe2_pb2.TensorProto.BYTE
    t.byte_data = bytes(48)
    path = _write(tmp_path / "mixed", [
        (b"a", encode_record(np.zeros((3, 4, 4), np.uint8), 1)),
        (b"b", encode_record(np.zeros((3, 5, 4), np.uint8), 2)),
        (b"c", only_image.SerializeToString())])
    with LMDBReader(path, 1) as reader:
        with pytest.raises(RecordError, match=r"record 'b': image is uint8 \[3, 5, 4\] but the first "
                                              r"record is uint8 \[3, 4, 4\]"):
            reader.load_batch([1])
        with pytest.raises(RecordError, match=r"record 'c': holds 1 tensor\(s\), expected 2"):
            reader.read(2)


def test_int64_labels_and_packed_dims_parse_like_the_schema(tmp_path):
    from food101.caffe2.proto import caffe2_pb2
    protos = caffe2_pb2.TensorProtos()
    image = protos.protos.add()
    image.dims.extend([1, 2, 2])
    image.data_type = caffe2_pb2.TensorProto.BYTE
    image.byte_data = bytes([1, 2, 3, 4])
    label = protos.protos.add()
    label.data_type = caffe2_pb2.TensorProto.INT64
    label.int64_data.append(-3)
    path = _write(tmp_path / "i64", [(b"k", protos.SerializeToString())])
    with LMDBReader(path, 1) as reader:
        images, labels = reader.next_batch()
    assert images.tolist() == [[[[1, 2], [3, 4]]]] and labels.tolist() == [-3]


def test_missing_or_empty_database(tmp_path):
    with pytest.raises(FileNotFoundError):
        LMDBReader(str(tmp_path / "none"), 2)
    with pytest.raises(RecordError, match="holds no records"):
        LMDBReader(_write(tmp_path / "empty", []), 2)


@pytest.mark.parametrize("train", [True, False])
def test_augment_transform_reads_records_without_a_uint8_batch(built, train):
    """Augment's zero-copy path (crops straight from the database) equals augmenting the batch."""
    from food101.data import Augment
    augment = Augment(20, train=train, scale=0.5)

    def batch_path(images, labels, generator):
        return augment(images, labels, generator)
    with LMDBReader(built, 7, shuffle=True, seed=4, transform=augment, num_threads=2) as fused, \
            LMDBReader(built, 7, shuffle=True, seed=4, transform=batch_path, num_threads=0) as plain:
        for (x, y), (x2, y2) in zip([b for _ in range(2) for b in fused], [b for _ in range(2) for b in plain]):
            assert x.shape == (len(y), 3, 20, 20) and x.dtype == torch.float32
            assert torch.equal(x, x2) and torch.equal(y, y2)
