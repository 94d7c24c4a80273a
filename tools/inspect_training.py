#!/usr/bin/env python
"""Show the diagnostics of a training run: findings, divergences, per-blob statistics, plots.

    python tools/inspect_training.py runs/food101_squeezenet
    python tools/inspect_training.py runs/food101_squeezenet/metrics.jsonl --iteration 2000 \\
        --kind grad --blobs 'fire9|conv10' --plot norms.png

The statistics come from the run's metrics.jsonl ("blob_stats" records written every
diagnostics.stats_interval iterations): min, max, mean, sdev, L2 norm, % zeros, % dead ReLU
channels, NaN/Inf counts and the update/weight ratio of every param, gradient and activation.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from food101.diagnostics import inspection  # noqa: E402

KINDS = ("param", "grad", "activation", "state")


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="run folder (holding metrics.jsonl) or a metrics.jsonl file")
    p.add_argument("--iteration", type=int, help="statistics of this iteration (default: the last)")
    p.add_argument("--kind", action="append", choices=KINDS,
                   help="only these blob kinds in the table (repeatable)")
    p.add_argument("--blobs", metavar="REGEX", help="only blobs whose name matches REGEX")
    p.add_argument("--plot", metavar="PNG", help="plot per-blob norms over the iterations")
    p.add_argument("--plot-kind", action="append", choices=KINDS,
                   help="panels of the plot (default: grad and activation)")
    return p


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    try:
        run = inspection.records(args.run)
        print("\n".join(inspection.summary(run, args.iteration, args.kind, args.blobs)))
        if args.plot:
            path = inspection.plot_norms(run, args.plot, tuple(args.plot_kind or ("grad", "activation")),
                                      args.blobs)
            print("plot: %s" % path)
    except (OSError, ValueError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
