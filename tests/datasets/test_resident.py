"""DeviceResidentDataset (on the CPU device): the reader's stream, batch for batch, from memory;
same resume state, same sharding; a training run with data.device_resident equals one without."""
import os

import numpy as np
import pytest
import torch

from food101.data import LMDBReader, build_lmdb
from food101.data.demo import make_demo_dataset
from food101.data.resident import DeviceResidentDataset
from tests.support import ZOO

ZOO = ZOO


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "food"
    make_demo_dataset(str(root), train_per_class=5, test_per_class=1, max_side=64)
    out = str(tmp_path_factory.mktemp("lmdb") / "train_lmdb")
    build_lmdb(str(root), "train", out, size=24, workers=0, progress=False)
    return out


def _resident(path, *args, **kw):
    return DeviceResidentDataset(LMDBReader(path, *args, **kw), "cpu", chunk=7, progress=False)


def _assert_same_stream(reader, resident, batches, batch_size=None):
    for _ in range(batches):
        images, labels = reader.next_batch(batch_size)
        r_images, r_labels = resident.next_batch(batch_size)
        assert isinstance(r_images, torch.Tensor) and r_images.dtype == torch.uint8
        assert r_labels.dtype == torch.int32 and r_images.device.type == "cpu"
        np.testing.assert_array_equal(r_images.numpy(), images)
        np.testing.assert_array_equal(r_labels.numpy(), labels)
        assert resident.last_keys == reader.last_keys
        assert resident.state_dict() == reader.state_dict()


@pytest.mark.parametrize("shuffle", [True, False])
def test_same_batches_as_the_reader_over_epochs(built, shuffle):
    with LMDBReader(built, 7, shuffle=shuffle, seed=5) as reader, \
            _resident(built, 7, shuffle=shuffle, seed=5) as resident:
        assert resident.images.shape == (30, 3, 24, 24) and resident.nbytes == 30 * 3 * 24 * 24
        assert resident.image_shape == reader.image_shape and resident.num_records == 30
        _assert_same_stream(reader, resident, 11)           # 77 records: into the third epoch
        assert resident.epoch == reader.epoch == 2
        _assert_same_stream(reader, resident, 3, batch_size=4)   # another size continues the stream


def test_state_dict_resumes_identically_either_way(built):
    with LMDBReader(built, 8, shuffle=True, seed=2) as reader, \
            _resident(built, 8, shuffle=True, seed=2) as resident:
        for _ in range(5):
            resident.next_batch()
        state = resident.state_dict()
        with _resident(built, 8, shuffle=True, seed=2) as fresh:
            fresh.load_state_dict(state)
            reader.load_state_dict(state)       # the reader takes the resident's state too
            _assert_same_stream(reader, fresh, 6)
        with pytest.raises(ValueError, match="seed"):
            resident.load_state_dict(dict(state, seed=3))


@pytest.mark.parametrize("shuffle", [True, False])
def test_sharding_matches_the_readers_shard(built, shuffle):
    for rank in range(3):
        with LMDBReader(built, 4, shuffle=shuffle, seed=3, rank=rank, world_size=3) as reader, \
                _resident(built, 4, shuffle=shuffle, seed=3, rank=rank, world_size=3) as resident:
            # without shuffling a rank only holds its fixed shard
            assert len(resident.images) == (30 if shuffle else 10)
            _assert_same_stream(reader, resident, 8)


def test_a_reader_with_a_transform_is_refused(built):
    reader = LMDBReader(built, 4, transform=lambda images, labels, generator: (images, labels))
    with pytest.raises(ValueError, match="transform"):
        DeviceResidentDataset(reader, "cpu", progress=False)
    reader.close()


def test_too_big_for_the_gpu_is_a_clear_error(built, monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3 << 30, 80 << 30))
    with LMDBReader(built, 4) as reader:
        monkeypatch.setattr(DeviceResidentDataset, "MARGIN_BYTES", 3 << 30)
        with pytest.raises(MemoryError, match=r"need 0\.00 GB on cuda.*only 3\.22 GB of 85\.90 GB are free"):
            DeviceResidentDataset(reader, "cuda", progress=False)


def test_training_run_equals_the_lmdb_run(built, tmp_path, monkeypatch):
    from food101 import checkpoint as ckpt
    from food101.train import config as C
    from food101.train import fine_tune
    from food101.train.metrics import read_jsonl

    served = []
    next_batch = DeviceResidentDataset.next_batch
    monkeypatch.setattr(DeviceResidentDataset, "next_batch",
                        lambda self, *a: served.append(1) or next_batch(self, *a))
    runs = []
    for resident in (False, True):
        cfg = C.load_config(overrides={
            "data.train_lmdb": built, "data.test_lmdb": "", "data.crop_size": 20, "data.batch_size": 8,
            "data.device_resident": resident, "model.zoo_dir": ZOO, "model.num_classes": 6,
            "model.unfreeze_from": "conv1", "solver.base_lr": 0.001, "solver.max_iter": 6,
            "solver.display": 2, "solver.test_interval": 0, "solver.snapshot": 0,
            "solver.random_seed": 7, "train.output_dir": str(tmp_path / str(resident)),
            "train.progress": False, "train.plots": False, "train.export": False})
        result = fine_tune(cfg, stream=open(os.devnull, "w"))
        records = [{k: v for k, v in r.items() if k != "images_per_s"}
                   for r in read_jsonl(result["metrics_path"]) if r.get("phase") == "train"]
        runs.append((ckpt.load_checkpoint(result["checkpoint"]), records))
    (a, ra), (b, rb) = runs
    assert len(served) == 6         # the second run did read from the resident copy
    assert len(ra) == 6 and ra == rb
    assert a["reader"] == dict(b["reader"], path=a["reader"]["path"]) and a["reader"]["epoch"] == 1
    assert sorted(a["blobs"]) == sorted(b["blobs"])
    for name, value in a["blobs"].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, b["blobs"][name]), name
