#!/usr/bin/env python
"""The main job on embedded data: demo Food-101 images -> LMDBs -> zoo SqueezeNet -> new
classifier -> fine-tune -> evaluate -> Caffe2 + ONNX export -> predict. `make demo` runs this.

    python tools/demo.py [--workdir demo_run] [--gpu [ID]] [--max-iter N]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from food101.walkthrough import run_demo  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="demo_run", help="where every artefact goes")
    parser.add_argument("--gpu", nargs="?", const=0, type=int, metavar="ID", help="train on CUDA device ID")
    parser.add_argument("--max-iter", type=int, help="training iterations (default: the demo's)")
    args = parser.parse_args(argv)
    result = run_demo(args.workdir, gpu=args.gpu, max_iter=args.max_iter)
    return 0 if not result.get("interrupted") else 130


if __name__ == "__main__":
    sys.exit(main())
