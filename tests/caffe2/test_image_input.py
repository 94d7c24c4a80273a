"""ImageInput / brew.image_input. The torch 1.4.0 Caffe2 wheel is built without OpenCV, so it has
no ImageInput to make fixtures with: these tests check Caffe2's documented transform (resize the
shorter side with INTER_AREA, centre crop at (h - crop) // 2, (x - mean) / std, NHWC) computed
with OpenCV/numpy, on the project's LMDB fixture (CHW BYTE records), encoded images and Caffe
Datum records."""
import os

import cv2
import numpy as np
import pytest
import torch

from food101.caffe2 import brew, core, db as dbs, model_helper, workspace
from food101.caffe2.errors import Caffe2Error
from food101.caffe2.proto import caffe2_pb2, numpy_to_tensor
from tests.support import reference_path

LMDB = reference_path("lmdb", "tensorprotos_byte.lmdb")
EXPECTED = np.load(LMDB + ".expected.npz")


def _run_image_input(reader_db, db_type, **args):
    workspace.RunOperatorOnce(core.CreateOperator("CreateDB", [], ["reader"], db=reader_db,
                                                  db_type=db_type))
    net = core.Net("images")
    net.ImageInput(["reader"], ["data", "label"], **args)
    workspace.CreateNet(net)
    workspace.RunNet(net)
    return workspace.FetchBlob("data"), workspace.FetchBlob("label"), net


def _encoded_minidb(path, images, labels, fmt=".png"):
    db = dbs.create_db("minidb", path, dbs.NEW)
    txn = db.new_transaction()
    for i, (image, label) in enumerate(zip(images, labels)):
        ok, encoded = cv2.imencode(fmt, image)
        assert ok
        image_proto = caffe2_pb2.TensorProto(data_type=caffe2_pb2.TensorProto.STRING,
                                             string_data=[encoded.tobytes()])
        protos = caffe2_pb2.TensorProtos(protos=[image_proto, numpy_to_tensor(np.array(label, np.int32))])
        txn.put("%05d" % i, protos.SerializeToString())
    txn.commit()
    db.close()


def test_project_lmdb_test_mode_centre_crop_and_normalisation():
    # records are (C, H, W) = (3, 8, 6); shorter side 6 == scale: no resize
    data, label, _ = _run_image_input(LMDB, "lmdb", batch_size=4, scale=6, crop=4, is_test=1,
                                      mean_per_channel=[10.0, 20.0, 30.0], std=2.0)
    images = EXPECTED["images"][:4].transpose(0, 2, 3, 1).astype(np.float32)   # NHWC
    top, left = (8 - 4) // 2, (6 - 4) // 2
    expected = (images[:, top:top + 4, left:left + 4] - np.array([10.0, 20.0, 30.0])) / 2.0
    assert data.dtype == np.float32 and data.shape == (4, 4, 4, 3)
    np.testing.assert_allclose(data, expected, rtol=1e-6)
    np.testing.assert_array_equal(label, EXPECTED["labels"][:4])


def test_encoded_images_resize_shorter_side_with_inter_area(tmp_path):
    rs = np.random.RandomState(3)
    images = [rs.randint(0, 256, size=(40, 30, 3), dtype=np.uint8),
              rs.randint(0, 256, size=(24, 50, 3), dtype=np.uint8)]
    path = str(tmp_path / "encoded.minidb")
    _encoded_minidb(path, images, [5, 7])
    data, label, _ = _run_image_input(path, "minidb", batch_size=2, scale=20, crop=16, is_test=1)
    expected = []
    for image in images:
        h, w = image.shape[:2]
        size = (20, int(h * 20.0 / w)) if h > w else (int(w * 20.0 / h), 20)
        resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        top, left = (resized.shape[0] - 16) // 2, (resized.shape[1] - 16) // 2
        expected.append(resized[top:top + 16, left:left + 16])
    np.testing.assert_array_equal(data, np.stack(expected).astype(np.float32))
    np.testing.assert_array_equal(label, [5, 7])


def test_caffe_datum_records_and_grayscale(tmp_path):
    rs = np.random.RandomState(4)
    image_chw = rs.randint(0, 256, size=(3, 6, 6), dtype=np.uint8)
    # Datum{channels: 3, height: 6, width: 6, data: CHW bytes, label: 9}, written by hand
    raw = image_chw.tobytes()
    datum = bytes([0x08, 3, 0x10, 6, 0x18, 6, 0x22, len(raw)]) + raw + bytes([0x28, 9])
    path = str(tmp_path / "datum.minidb")
    db = dbs.create_db("minidb", path, dbs.NEW)
    db.new_transaction().put("0", datum)
    db.close()
    data, label, _ = _run_image_input(path, "minidb", batch_size=1, scale=6, crop=6, is_test=1,
                                      use_caffe_datum=1)
    np.testing.assert_array_equal(data[0], image_chw.transpose(1, 2, 0))
    assert label[0] == 9
    workspace.ResetWorkspace()
    gray, _, _ = _run_image_input(path, "minidb", batch_size=1, scale=6, crop=6, is_test=1,
                                  use_caffe_datum=1, color=0)
    expected = cv2.cvtColor(np.ascontiguousarray(image_chw.transpose(1, 2, 0)), cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(gray[0, :, :, 0], expected)


def test_training_mode_random_crops_and_mirrors_are_crops_of_the_image():
    data, _, net = _run_image_input(LMDB, "lmdb", batch_size=12, scale=6, crop=4, is_test=0, mirror=1)
    images = EXPECTED["images"].transpose(0, 2, 3, 1).astype(np.float32)
    flips = 0
    for out, image in zip(data, images):
        candidates = {}
        for top in range(8 - 4 + 1):
            for left in range(6 - 4 + 1):
                window = image[top:top + 4, left:left + 4]
                candidates[(top, left, False)] = window
                candidates[(top, left, True)] = window[:, ::-1]
        match = [k for k, v in candidates.items() if np.array_equal(v, out)]
        assert match, "an output is no crop of its image"
        flips += all(k[2] for k in match)
    assert 0 < flips < 12          # both mirrored and unmirrored images in 12 draws


def test_brew_image_input_gives_nchw_and_needs_is_test():
    workspace.RunOperatorOnce(core.CreateOperator("CreateDB", [], ["reader"], db=LMDB, db_type="lmdb"))
    model = model_helper.ModelHelper(name="img")
    data, label = brew.image_input(model, ["reader"], ["data", "label"], batch_size=2, scale=6,
                                   crop=4, is_test=1)
    assert [op.type for op in model.net.Proto().op] == ["ImageInput", "NHWC2NCHW"]
    workspace.RunNetOnce(model.net)
    assert workspace.FetchBlob("data").shape == (2, 3, 4, 4)
    with pytest.raises(TypeError, match="is_test is required"):
        brew.image_input(model, ["reader"], ["d2", "l2"], batch_size=2, scale=6, crop=4)
    workspace.RunOperatorOnce(core.CreateOperator("CreateDB", [], ["reader2"], db=LMDB, db_type="lmdb"))
    gpu_path = model_helper.ModelHelper(name="img_gpu")
    brew.image_input(gpu_path, ["reader2"], ["data_g", "label_g"], batch_size=2, scale=6, crop=4,
                     is_test=1, use_gpu_transform=True)
    workspace.RunNetOnce(gpu_path.net)
    np.testing.assert_array_equal(workspace.FetchBlob("data_g"), workspace.FetchBlob("data"))


def test_bad_arguments_are_named():
    with pytest.raises(Caffe2Error, match="crop 9 is larger than the 8x6 image"):
        _run_image_input(LMDB, "lmdb", batch_size=1, scale=6, crop=9, is_test=1)
    with pytest.raises(Caffe2Error, match="color_jitter is not supported"):
        _run_image_input(LMDB, "lmdb", batch_size=1, scale=6, crop=4, is_test=1, color_jitter=1)
    with pytest.raises(Caffe2Error, match="scale must be > 0"):
        _run_image_input(LMDB, "lmdb", batch_size=1, crop=4, is_test=1)


@pytest.mark.cuda
def test_augmentation_on_the_op_device():
    workspace.RunOperatorOnce(core.CreateOperator("CreateDB", [], ["reader"], db=LMDB, db_type="lmdb"))
    op = core.CreateOperator("ImageInput", ["reader"], ["data", "label"], batch_size=2, scale=6,
                             crop=4, is_test=1, device_option=core.DeviceOption(caffe2_pb2.CUDA, 0))
    workspace.RunOperatorOnce(op)
    assert workspace.FetchTensor("data").device.type == "cuda"
    assert isinstance(workspace.FetchTensor("data"), torch.Tensor)
