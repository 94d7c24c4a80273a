"""build_lmdb: records read back equal to what OpenCV decodes, in a reproducible shuffled order,
parse with the Caffe2 schema, carry metadata; existing output and map growth."""
import json
import os

import cv2
import lmdb
import numpy as np
import pytest

from food101.caffe2.proto import caffe2_pb2, tensor_to_numpy
from food101.data import LMDBReader, OutputExistsError, build_lmdb, read_metadata
from food101.data.synthetic import make_demo_dataset
from food101.data.layout import Food101Layout
from food101.data.records import key_source

SIZE = 48


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "food"
    make_demo_dataset(str(root), train_per_class=6, test_per_class=2, max_side=96)
    return str(root)


@pytest.fixture(scope="module")
def built(demo, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("lmdb") / "train_lmdb")
    summary = build_lmdb(demo, "train", out, size=SIZE, workers=2, seed=5, progress=False)
    return out, summary


def _records(path):
    env = lmdb.open(path, readonly=True, lock=False)
    with env.begin() as txn:
        items = list(txn.cursor())
    env.close()
    return items


def opencv_reference(path, size):
    """The stored image computed independently: shorter side to size (INTER_AREA when
    shrinking), centre crop, CHW."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    h, w = image.shape[:2]
    scale = size / min(h, w)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (nh - size) // 2, (nw - size) // 2
    return image[top:top + size, left:left + size].transpose(2, 0, 1)


def test_records_equal_opencv_decode_and_labels(demo, built):
    out, summary = built
    layout = Food101Layout(demo)
    items = {i.image_id: i for i in layout.items("train")}
    records = _records(out)
    assert len(records) == len(items) == summary.num_records == 36
    for key, value in records:
        protos = caffe2_pb2.TensorProtos.FromString(value)     # the Caffe2 schema parses it
        image, label = protos.protos
        assert image.data_type == caffe2_pb2.TensorProto.BYTE and list(image.dims) == [3, SIZE, SIZE]
        assert label.data_type == caffe2_pb2.TensorProto.INT32
        item = items[key_source(key)]
        np.testing.assert_array_equal(tensor_to_numpy(image), opencv_reference(item.path, SIZE))
        assert tensor_to_numpy(label).item() == item.label


def test_keys_sorted_shuffled_and_reproducible(demo, built, tmp_path):
    out, _ = built
    keys = [k for k, _ in _records(out)]
    assert [k[:8] for k in keys] == [b"%08d" % i for i in range(len(keys))]
    meta_order = open(os.path.join(demo, "meta", "train.txt")).read().split()
    sources = [key_source(k) for k in keys]
    assert sources != meta_order and sorted(sources) == sorted(meta_order)
    again = build_lmdb(demo, "train", str(tmp_path / "again"), size=SIZE, workers=0, seed=5, progress=False)
    assert _records(again.out) == _records(out)                 # same seed: same bytes, any workers
    other = build_lmdb(demo, "train", str(tmp_path / "other"), size=SIZE, workers=0, seed=6, progress=False)
    assert [key_source(k) for k, _ in _records(other.out)] != sources


def test_metadata_side_files(built):
    out, summary = built
    meta = read_metadata(out)
    assert meta["classes"] == Food101Layout(meta["source_root"]).classes
    assert meta["num_records"] == 36 and sum(meta["per_class_counts"].values()) == 36
    assert meta["image"] == {"dims": [3, SIZE, SIZE], "data_type": "BYTE", "dtype": "uint8",
                             "layout": "CHW", "channels": "BGR"}
    assert meta["size"] == SIZE and meta["resize"] == "crop" and meta["seed"] == 5
    assert meta["layout_version"] == "food-101/1"
    with LMDBReader(out, 36) as reader:
        images, _ = next(iter(reader))
    np.testing.assert_allclose(meta["mean_bgr"], images.reshape(36, 3, -1).mean(axis=(0, 2)), rtol=1e-9)
    np.testing.assert_allclose(meta["std_bgr"], images.transpose(1, 0, 2, 3).reshape(3, -1).std(axis=1), rtol=1e-6)
    report = json.load(open(os.path.join(out, "build_report.json")))
    assert report["skipped"] == [] and report["num_records"] == 36
    assert "36 records" in summary.format()


def test_class_subset_and_stretch(demo, tmp_path):
    summary = build_lmdb(demo, "test", str(tmp_path / "sub"), size=20, resize="stretch",
                         classes=["waffles", "pizza"], limit_per_class=1, workers=0, progress=False)
    assert summary.classes == ["pizza", "waffles"] and summary.num_records == 2
    layout = Food101Layout(demo)
    for key, value in _records(summary.out):
        image = tensor_to_numpy(caffe2_pb2.TensorProtos.FromString(value).protos[0])
        path = os.path.join(layout.images_dir, key_source(key) + ".jpg")
        expected = cv2.resize(cv2.imread(path), (20, 20), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
        np.testing.assert_array_equal(image, expected)


def test_existing_output_needs_overwrite_and_is_replaced_whole(demo, built, tmp_path):
    out = str(tmp_path / "o")
    build_lmdb(demo, "test", out, size=16, workers=0, progress=False)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        build_lmdb(demo, "test", out, size=16, workers=0, progress=False)
    build_lmdb(demo, "test", out, size=24, workers=0, progress=False, overwrite=True)
    assert read_metadata(out)["size"] == 24
    assert sorted(os.listdir(tmp_path)) == ["o"]               # no temporary or old folders left
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="not an LMDB"):
        build_lmdb(demo, "test", str(tmp_path / "notes"), size=16, workers=0, progress=False, overwrite=True)


def test_map_grows_from_a_tiny_start(demo, tmp_path):
    summary = build_lmdb(demo, "train", str(tmp_path / "grow"), size=SIZE, workers=0, progress=False,
                         map_size=64 * 1024)
    assert summary.map_size > 64 * 1024 and summary.num_records == 36
    assert len(_records(summary.out)) == 36


def test_spawn_workers(demo, tmp_path):
    summary = build_lmdb(demo, "test", str(tmp_path / "spawned"), size=16, workers=2, progress=False,
                         start_method="spawn")
    assert summary.num_records == 12
