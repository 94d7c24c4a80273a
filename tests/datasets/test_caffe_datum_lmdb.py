"""A Caffe user's Data-layer LMDB (convert_imageset's Datum records) reads like the project's own."""
import cv2
import lmdb
import numpy as np
import pytest

from food101.data import LMDBReader
from food101.data.records import RecordError
from food101.interop.caffe import caffe_pb2


def _write(path, records):
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for key, value in records:
            txn.put(key, value)
    env.close()


def _datum(image_chw, label, encoded=False):
    datum = caffe_pb2.Datum(channels=image_chw.shape[0], height=image_chw.shape[1],
                            width=image_chw.shape[2], label=label)
    if encoded:
        ok, png = cv2.imencode(".png", image_chw.transpose(1, 2, 0))
        datum.data, datum.encoded = png.tobytes(), True
    else:
        datum.data = image_chw.tobytes()
    return datum.SerializeToString()


@pytest.mark.parametrize("encoded", [False, True])
def test_datum_records_give_images_and_labels(tmp_path, encoded):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (3, 8, 10), dtype=np.uint8) for _ in range(4)]
    _write(tmp_path / "caffe_lmdb", [(b"%08d_x.jpg" % i, _datum(im, i % 3, encoded))
                                      for i, im in enumerate(images)])
    reader = LMDBReader(str(tmp_path / "caffe_lmdb"), batch_size=4)
    for i, image in enumerate(images):
        got, label = reader.read(i)
        np.testing.assert_array_equal(got, image)
        assert label == i % 3


def test_truncated_datum_names_file_and_key(tmp_path):
    value = _datum(np.zeros((3, 4, 4), np.uint8), 1)
    _write(tmp_path / "bad", [(b"k1", value[:-5])])
    with pytest.raises(RecordError, match=r"bad: record 'k1': .*Caffe Datum: field 4 claims"):
        LMDBReader(str(tmp_path / "bad"), batch_size=1).read(0)
