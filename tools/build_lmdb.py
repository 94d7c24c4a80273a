#!/usr/bin/env python
"""Build an LMDB of Caffe2 TensorProtos records from a Food-101 layout.

    python tools/build_lmdb.py --root food-101 --split train --out food101_train_lmdb
    python tools/build_lmdb.py --root demo --split test --out demo_test_lmdb --size 128 --workers 2

Each record is [image: BYTE CHW (BGR, size x size), label: INT32]; keys sort in a shuffled
order fixed by --seed. Images are resized so the shorter side is --size, then centre-cropped to
size x size (--resize stretch: plain resize). Bad files are skipped or converted and listed in
<out>/bad_files.txt; metadata (classes, mean BGR, counts) goes to <out>/food101_meta.json.
The output appears only when complete; an existing one is replaced only with --overwrite.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from food101.data.cli import build_main  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="dataset folder with images/ and meta/")
    p.add_argument("--split", required=True, choices=("train", "test"))
    p.add_argument("--out", required=True, help="LMDB folder to write")
    p.add_argument("--size", type=int, default=256, help="stored images are size x size (default 256)")
    p.add_argument("--resize", choices=("crop", "stretch"), default="crop",
                   help="crop: shorter side to size, centre crop (default); stretch: plain resize")
    p.add_argument("--interpolation", choices=("area", "linear"), default="area",
                   help="filter when shrinking (default area: no aliasing; linear: faster)")
    p.add_argument("--workers", type=int, default=None, help="decode processes (default: CPU count; 0: none)")
    p.add_argument("--limit-per-class", type=int, default=None, metavar="K", help="first K images of each class")
    p.add_argument("--classes", help="comma-separated subset of classes (labels follow classes.txt order)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffled record order")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-progress", action="store_true")
    return p


if __name__ == "__main__":
    sys.exit(build_main(get_args_parser().parse_args()))
