#!/usr/bin/env python
"""Write a small synthetic dataset in the exact Food-101 layout (for the demo and the tests).

    python tools/make_demo_dataset.py --out demo-food
    python tools/make_demo_dataset.py --out demo-food --with-broken --train-per-class 10

Six real Food-101 classes drawn procedurally (distinct palettes and shapes), JPEGs of varying
size and aspect, deterministic for a --seed. --with-broken adds a zero-byte file, a truncated
JPEG, a text file named .jpg, a grayscale and a CMYK JPEG to meta/train.txt.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from food101.data.cli import make_demo_main  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument("--classes", help="comma-separated subset of the demo classes (default: all six)")
    p.add_argument("--train-per-class", type=int, default=30)
    p.add_argument("--test-per-class", type=int, default=10)
    p.add_argument("--max-side", type=int, default=512, help="longest image side (default 512)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--with-broken", action="store_true", help="add deliberately broken files")
    p.add_argument("--overwrite", action="store_true")
    return p


if __name__ == "__main__":
    sys.exit(make_demo_main(get_args_parser().parse_args()))
