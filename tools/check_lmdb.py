#!/usr/bin/env python
"""Scan an LMDB of TensorProtos records: decodability, shapes, labels, duplicates, counts.

    python tools/check_lmdb.py food101_train_lmdb
    python tools/check_lmdb.py some_caffe2_lmdb --num-classes 101 --strict

Prints a report; exits 1 when it found problems (with --strict: also warnings, e.g. nearly
black images or classes without records), 2 when the database cannot be opened.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from food101.data.cli import check_main  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("lmdb", help="LMDB folder (or file)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="valid labels are 0..N-1 (default: from the builder's metadata)")
    p.add_argument("--strict", action="store_true", help="warnings fail the check too")
    p.add_argument("--limit", type=int, default=20, help="problems listed per section")
    p.add_argument("--no-progress", action="store_true")
    return p


if __name__ == "__main__":
    sys.exit(check_main(get_args_parser().parse_args()))
