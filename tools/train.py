#!/usr/bin/env python
"""Fine-tune the Caffe2 Model Zoo SqueezeNet on a Food-101 LMDB.

    python tools/train.py --config configs/food101_squeezenet.yaml --gpu
    python tools/train.py --solver configs/solver.prototxt --train-lmdb data/train_lmdb \\
        --test-lmdb data/test_lmdb --set solver.max_iter=2000 --output-dir runs/sq
    python tools/train.py --resume runs/sq/snapshots          # continue the newest checkpoint
    torchrun --nproc_per_node 4 tools/train.py --gpu --distributed --config ...   # 4 GPUs

Config: defaults < --config YAML < --solver prototxt < flags and --set KEY=VALUE. The effective
config, the log, metrics.jsonl, plots, checkpoints and the deploy model go to --output-dir.
Ctrl-C writes a checkpoint and exits with status 130.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

try:
    from food101.cli import ToolParser  # noqa: E402
    from food101.train.cli import train_main  # noqa: E402
except KeyboardInterrupt:  # Ctrl-C while torch and the package load: one line, status 130
    print("interrupted before training started: nothing was saved", file=sys.stderr)
    sys.exit(130)


def get_args_parser():
    p = ToolParser(description=__doc__.split("\n\n")[0],
                   formatter_class=argparse.RawDescriptionHelpFormatter,
                   epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--config", help="config YAML (configs/food101_squeezenet.yaml documents every key)")
    p.add_argument("--solver", help="Caffe solver.prototxt (merged over --config)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set solver.base_lr=0.001 (repeatable)")
    device = p.add_mutually_exclusive_group()
    p.add_gpu("train on CUDA device ID (default 0)", group=device)
    device.add_argument("--cpu", action="store_true", help="train on the CPU (the default)")
    p.add_argument("--train-lmdb", help="= --set data.train_lmdb=PATH")
    p.add_argument("--test-lmdb", help="= --set data.test_lmdb=PATH")
    p.add_argument("--output-dir", help="= --set train.output_dir=PATH")
    p.add_argument("--zoo-dir", help="= --set model.zoo_dir=PATH (default: the downloaded zoo model "
                                     "or the stand-in)")
    p.add_argument("--max-iter", type=int, help="= --set solver.max_iter=N")
    p.add_argument("--batch-size", type=int, help="= --set data.batch_size=N")
    p.add_argument("--base-lr", type=float, help="= --set solver.base_lr=X")
    p.add_argument("--seed", type=int, help="= --set solver.random_seed=N")
    p.add_argument("--bf16", action="store_true", help="= --set train.bf16=true")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the processes torchrun starts, one per device "
                        "(= --set distributed.enabled=true; see the distributed.* config keys)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    p.add_argument("--verbose", action="store_true",
                   help="print the per-blob statistics tables too (= --set train.verbose=true)")
    p.add_argument("--overwrite", action="store_true",
                   help="clear an --output-dir that holds an earlier run (= --set train.overwrite=true)")
    p.add_argument("--resume", metavar="PATH",
                   help="continue from a checkpoint (.ckpt) or the newest in a folder; without "
                        "--config/--solver the checkpoint's own config is used")
    p.add_argument("--print-config", action="store_true",
                   help="print the effective config and exit")
    return p


if __name__ == "__main__":
    try:
        args = get_args_parser().parse_args()
    except KeyboardInterrupt:
        print("interrupted before training started: nothing was saved", file=sys.stderr)
        sys.exit(130)
    sys.exit(train_main(args))
