"""Entry points of tools/build_lmdb.py, tools/make_demo_dataset.py and tools/check_lmdb.py.

Each takes the parsed argparse namespace, calls one function of food101.data, prints a short
result and returns the exit status: 0 done, 1 problems found (check), 2 refused (bad layout,
existing output, bad arguments), 130 interrupted.
"""
import sys


def _classes(text):
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def build_main(args):
    from food101.data.layout import LayoutError
    from food101.data.writer import BuildError, BuildInterrupted, OutputExistsError, build_lmdb
    try:
        summary = build_lmdb(args.root, args.split, args.out, size=args.size, resize=args.resize,
                             interpolation=args.interpolation, workers=args.workers,
                             limit_per_class=args.limit_per_class, classes=_classes(args.classes),
                             seed=args.seed, overwrite=args.overwrite, progress=not args.no_progress)
    except (LayoutError, OutputExistsError, BuildError, ValueError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    except BuildInterrupted as e:
        print("interrupted (%s): nothing was written to %s" % (e, args.out), file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted: nothing was written to %s" % args.out, file=sys.stderr)
        return 130
    print(summary.format())
    return 0


def make_demo_main(args):
    from food101.data.synthetic import DEMO_CLASSES, make_demo_dataset
    try:
        demo = make_demo_dataset(args.out, classes=_classes(args.classes) or DEMO_CLASSES,
                                 train_per_class=args.train_per_class, test_per_class=args.test_per_class,
                                 max_side=args.max_side, seed=args.seed, with_broken=args.with_broken,
                                 overwrite=args.overwrite)
    except (ValueError, FileExistsError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    print("wrote %s: %d classes (%s), %d train + %d test images per class%s" % (
        demo.root, len(demo.classes), ", ".join(demo.classes), demo.counts["train"], demo.counts["test"],
        ", %d broken files in train" % len(demo.broken) if demo.broken else ""))
    for image_id, (kind, handling) in sorted(demo.broken.items()):
        print("  %s: %s (the builder should report it %s)" % (image_id, kind, handling))
    return 0


def check_main(args):
    from food101.data.check import check_lmdb
    from food101.data.records import RecordError
    try:
        report = check_lmdb(args.lmdb, num_classes=args.num_classes, progress=not args.no_progress,
                            strict=args.strict)
    except (FileNotFoundError, RecordError) as e:   # lmdb_file.DatabaseError is a RecordError
        print("error: %s" % e, file=sys.stderr)
        return 2
    print(report.format(limit=args.limit))
    return 0 if report.ok else 1
