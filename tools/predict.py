#!/usr/bin/env python
"""Print the top-5 Food-101 classes of images, with probabilities.

    python tools/predict.py --model runs/sq/deploy pizza.jpg ramen.jpg

The images are decoded with OpenCV and resized exactly as tools/build_lmdb.py stored the
training images, then centre-cropped and mean-subtracted as in evaluation.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from food101.cli import ToolParser  # noqa: E402
from food101.train.cli import predict_main  # noqa: E402

DEFAULT_MODEL = os.path.join("runs", "food101_squeezenet", "deploy")


def get_args_parser():
    p = ToolParser(description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="deploy folder, checkpoint or training output folder (default %(default)s)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_gpu()
    return p


if __name__ == "__main__":
    sys.exit(predict_main(get_args_parser().parse_args()))
