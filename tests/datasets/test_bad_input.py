"""Bad input never kills or corrupts a build: broken files are skipped or converted and reported."""
import json
import os

import cv2
import numpy as np
import pytest

from food101.data import LMDBReader, build_lmdb
from food101.data.decode import BadImage, decode_image_bytes, read_image
from food101.data.synthetic import make_demo_dataset
from food101.data.layout import Food101Layout

SIZE = 32


@pytest.fixture(scope="module")
def broken_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "food"
    demo = make_demo_dataset(str(root), train_per_class=3, test_per_class=1, max_side=80, with_broken=True)
    out = str(tmp_path_factory.mktemp("lmdb") / "train_lmdb")
    return demo, build_lmdb(demo.root, "train", out, size=SIZE, workers=2, progress=False)


def test_broken_files_skipped_or_converted_with_reasons(broken_build):
    demo, summary = broken_build
    skipped = dict(summary.bad)
    converted = dict(summary.converted)
    for image_id, (kind, handling) in demo.broken.items():
        assert image_id in (skipped if handling == "skipped" else converted), kind
    reasons = {demo.broken[i][0]: r for i, r in skipped.items()}
    assert reasons["zero_byte"] == "zero-byte file"
    assert reasons["truncated_jpeg"].startswith("truncated JPEG")
    assert reasons["text_as_jpeg"].startswith("not an image")
    notes = {demo.broken[i][0]: n for i, n in converted.items()}
    assert notes == {"grayscale_jpeg": "grayscale JPEG converted to BGR", "cmyk_jpeg": "CMYK JPEG converted to BGR"}
    assert summary.num_records == 6 * 3 + 2


def test_report_files_list_every_bad_file(broken_build):
    demo, summary = broken_build
    report = json.load(open(os.path.join(summary.out, "build_report.json")))
    assert {r["image"] for r in report["skipped"]} == {i for i, (_, h) in demo.broken.items() if h == "skipped"}
    assert {r["image"] for r in report["converted"]} == {i for i, (_, h) in demo.broken.items() if h == "converted"}
    lines = open(os.path.join(summary.out, "bad_files.txt")).read().splitlines()
    assert len(lines) == len(demo.broken) and all(len(line.split("\t")) == 3 for line in lines)
    assert "skipped 3 bad file(s), converted 2" in summary.format()


def test_converted_images_hold_what_opencv_decodes(broken_build):
    demo, summary = broken_build
    layout = Food101Layout(demo.root)
    with LMDBReader(summary.out, 1) as reader:
        by_source = {reader.source_of(k): i for i, k in enumerate(reader.keys)}
        for image_id, (kind, handling) in demo.broken.items():
            if handling != "converted":
                assert image_id not in by_source
                continue
            image, label = reader.read(by_source[image_id])
            decoded = cv2.imread(os.path.join(layout.images_dir, image_id + ".jpg"), cv2.IMREAD_COLOR)
            h, w = decoded.shape[:2]
            s = SIZE / min(h, w)
            nw, nh = max(SIZE, round(w * s)), max(SIZE, round(h * s))
            decoded = cv2.resize(decoded, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
            top, left = (nh - SIZE) // 2, (nw - SIZE) // 2
            np.testing.assert_array_equal(image, decoded[top:top + SIZE, left:left + SIZE].transpose(2, 0, 1))
            assert label == layout.classes.index(image_id.split("/")[0])
            if kind == "grayscale_jpeg":
                assert (image[0] == image[1]).all() and (image[1] == image[2]).all()


def test_all_files_bad_is_an_error_and_leaves_nothing(tmp_path):
    demo = make_demo_dataset(str(tmp_path / "d"), classes=["pizza"], train_per_class=2, test_per_class=0, max_side=64)
    for name in os.listdir(os.path.join(demo.root, "images", "pizza")):
        open(os.path.join(demo.root, "images", "pizza", name), "wb").close()
    from food101.data import BuildError
    with pytest.raises(BuildError, match="no image of train could be decoded.*zero-byte"):
        build_lmdb(demo.root, "train", str(tmp_path / "out"), size=16, workers=0, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["d"]


@pytest.mark.parametrize("data, reason", [
    (b"", "zero-byte file"),
    (b"GIF89a\x01\x00garbage", "undecodable GIF"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "undecodable PNG"),
    (b"%PDF-1.4 not an image", "not an image"),
])
def test_decode_reasons(data, reason):
    with pytest.raises(BadImage, match=reason):
        decode_image_bytes(data)


def test_png_with_alpha_and_16_bit_are_converted():
    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[..., 0] = 200
    ok, buf = cv2.imencode(".png", rgba)
    image, note = decode_image_bytes(buf.tobytes())
    assert image.shape == (5, 7, 3) and (image[..., 0] == 200).all()
    assert note == "PNG image (4 channels) converted to BGR"
    ok, buf = cv2.imencode(".png", np.full((4, 4), 65535, np.uint16))
    image, note = decode_image_bytes(buf.tobytes())
    assert image.dtype == np.uint8 and image.shape == (4, 4, 3) and (image == 255).all()


def test_unreadable_path(tmp_path):
    with pytest.raises(BadImage, match="unreadable"):
        read_image(str(tmp_path))            # a directory cannot be read as a file
