#!/usr/bin/env python
"""Print (and plot) the learning rate of a training config or of any LearningRate policy.

    python tools/lr_schedule.py --config configs/food101_squeezenet.yaml
    python tools/lr_schedule.py --solver configs/solver.prototxt --plot lr.png
    python tools/lr_schedule.py --policy cosine --base-lr 0.1 --max-iter 200 \\
        --arg min_lr=0.01 --arg max_lr=1 --arg period=50

Problems (a NaN or negative rate, a rate that grows under a decaying policy, a poly max_iter
shorter than the run, ...) are printed as WARNING lines; --strict makes them an exit status 1.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from food101.train.config import ConfigError  # noqa: E402
from food101.train.schedule import POLICIES, parse_policy_args, schedule_report  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="training config YAML")
    p.add_argument("--solver", help="Caffe solver.prototxt")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. solver.gamma=0.5 (repeatable)")
    p.add_argument("--policy", choices=POLICIES, help="any LearningRate policy (instead of the config's)")
    p.add_argument("--arg", dest="policy_args", action="append", default=[], metavar="NAME=VALUE",
                   help="a policy argument, e.g. stepsize=100 (repeatable)")
    p.add_argument("--base-lr", type=float, help="base learning rate (default: solver.base_lr)")
    p.add_argument("--max-iter", type=int, help="iterations to show (default: solver.max_iter)")
    p.add_argument("--points", type=int, default=20, help="evenly spaced rows to print")
    p.add_argument("--plot", help="write the curve to this PNG")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when there are warnings")
    return p


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    try:
        lines, warnings = schedule_report(
            args.config, args.solver, args.overrides, args.policy, args.base_lr, args.max_iter,
            parse_policy_args(args.policy_args), args.points, args.plot)
    except (ConfigError, ValueError, OSError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 1 if (warnings and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
