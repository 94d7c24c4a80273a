#!/usr/bin/env python
"""The main job on embedded data: demo Food-101 images -> LMDBs -> zoo SqueezeNet -> new
classifier -> fine-tune -> evaluate -> Caffe2 + ONNX export -> predict. `make demo` runs this.

    python tools/demo.py [--workdir demo_run] [--gpu [ID]] [--max-iter N]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from food101.cli import ToolParser  # noqa: E402
from food101.caffe2.errors import Caffe2Error  # noqa: E402
from food101.walkthrough import run_demo  # noqa: E402
from food101.train import CheckpointError, ConfigError, TrainingError  # noqa: E402

# what a demo run can meet that is not a bug: no GPU, a damaged or half-built work folder
DEMO_ERRORS = (TrainingError, ConfigError, CheckpointError, Caffe2Error, ValueError, OSError)


def main(argv=None):
    parser = ToolParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="demo_run", help="where every artefact goes")
    parser.add_gpu("train on CUDA device ID (default 0)")
    parser.add_argument("--max-iter", type=int, help="training iterations (default: the demo's)")
    args = parser.parse_args(argv)
    try:
        result = run_demo(args.workdir, gpu=args.gpu, max_iter=args.max_iter)
    except DEMO_ERRORS as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    return 0 if not result.get("interrupted") else 130


if __name__ == "__main__":
    sys.exit(main())
