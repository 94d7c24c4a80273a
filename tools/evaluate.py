#!/usr/bin/env python
"""Evaluate a trained model on an LMDB: top-1, top-5, per-class accuracy, confusion matrix.

    python tools/evaluate.py runs/sq/deploy data/food101_test_lmdb --out-dir runs/sq/eval_test
    python tools/evaluate.py runs/sq/snapshots/squeezenet_food101_best.ckpt data/food101_test_lmdb

MODEL is a deploy folder, a checkpoint (.ckpt, or a folder of them: the newest) or a training
output folder (its deploy/ when present). Images are centre-cropped as in training's evaluation.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from food101.cli import ToolParser  # noqa: E402
from food101.train.cli import evaluate_main  # noqa: E402


def get_args_parser():
    p = ToolParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="deploy folder, checkpoint, or training output folder")
    p.add_argument("lmdb", help="LMDB of TensorProtos records (tools/build_lmdb.py)")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--limit-batches", type=int, default=0, help="evaluate only this many batches (0 = all)")
    p.add_argument("--out-dir", help="write eval.json and confusion.png here")
    p.add_gpu()
    p.add_argument("--no-progress", action="store_true")
    return p


if __name__ == "__main__":
    sys.exit(evaluate_main(get_args_parser().parse_args()))
