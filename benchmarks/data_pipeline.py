"""Data pipeline throughput: LMDB build, raw cursor read, reader, reader + augmentation (CPU).

    python benchmarks/data_pipeline.py                       # synthetic demo dataset, 600 images
    python benchmarks/data_pipeline.py --root food-101 --limit-per-class 50 --workers 1,8

Prints images/s for
  build            decode (OpenCV) + resize + serialize + write, with 1 and with N workers
                   (per worker = total / workers; includes starting the worker pool)
  raw cursor       a plain LMDB cursor walk copying every value out (bytes): the limit
  reader           LMDBReader: shuffled random reads, one copy into a uint8 NCHW batch
  reader+augment   the same with Augment (random crop, mirror, mean) to a float32 batch,
                   run by the reader threads, as a CPU training loop would consume it
and the ratio reader+augment / raw cursor (target >= 0.5).
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from food101.data import Augment, LMDBReader, build_lmdb, make_demo_dataset  # noqa: E402
from food101.data.reader import open_env, release_env  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", help="a Food-101 layout (default: a generated demo dataset)")
    p.add_argument("--per-class", type=int, default=100, help="demo images per class (default 100)")
    p.add_argument("--limit-per-class", type=int, default=None, help="with --root: images per class")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--crop", type=int, default=227)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", default="1,%d" % (os.cpu_count() or 1), help="build worker counts")
    p.add_argument("--threads", type=int, default=2, help="reader threads")
    p.add_argument("--seconds", type=float, default=3.0, help="minimum time per read measurement")
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--keep", help="keep the dataset and LMDB in this folder")
    return p


def rate(fn, seconds):
    """Images per second of `fn` (returns images done), repeated for at least `seconds`:
    (per wall-clock second, per CPU second of this process). The second is the cost per core,
    less sensitive to other load on the machine."""
    fn()                                     # warm: page cache, buffers, threads
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        done += fn()
    return done / (time.perf_counter() - start), done / max(1e-9, time.process_time() - cpu)


def raw_cursor(path):
    env = open_env(path)

    def walk():
        n = 0
        with env.begin() as txn:
            for _key, value in txn.cursor():    # value: bytes, one copy out of the map
                n += len(value) > 0
        return n
    return env, walk


def epochs(reader):
    def one():
        return sum(len(batch[1]) for batch in reader)
    return one


def main(args):
    work = args.keep or tempfile.mkdtemp(prefix="food101_bench_")
    os.makedirs(work, exist_ok=True)
    figures = {}
    try:
        root = args.root
        if root is None:
            root = os.path.join(work, "demo")
            if not os.path.exists(os.path.join(root, "meta")):
                t = time.perf_counter()
                make_demo_dataset(root, train_per_class=args.per_class, test_per_class=1)
                print("demo dataset: %d images/class in %.1f s" % (args.per_class, time.perf_counter() - t))
        out = os.path.join(work, "train_lmdb")
        for workers in [int(w) for w in args.workers.split(",")]:
            s = build_lmdb(root, "train", out, size=args.size, workers=workers, overwrite=True,
                           progress=False, limit_per_class=args.limit_per_class)
            figures["build_%d_workers" % workers] = s.images_per_second
            figures["build_per_worker_%d_workers" % workers] = s.images_per_second_per_worker
            print("build   %2d worker(s): %7.0f images/s, %6.0f per worker   (%d records %dx%d, %.1f s)"
                  % (workers, s.images_per_second, s.images_per_second_per_worker, s.num_records,
                     args.size, args.size, s.seconds))
        env, walk = raw_cursor(out)
        figures["raw_cursor"], figures["raw_cursor_per_cpu_s"] = rate(walk, args.seconds)
        release_env(env)
        with LMDBReader(out, args.batch, shuffle=True, num_threads=args.threads) as reader:
            figures["reader_uint8"], figures["reader_uint8_per_cpu_s"] = rate(epochs(reader), args.seconds)
        augment = Augment(args.crop, train=True)
        with LMDBReader(out, args.batch, shuffle=True, num_threads=args.threads, transform=augment) as reader:
            figures["reader_augment_float"], figures["reader_augment_float_per_cpu_s"] = \
                rate(epochs(reader), args.seconds)
        figures["ratio_reader_augment_to_raw"] = figures["reader_augment_float"] / figures["raw_cursor"]
        raw = figures["raw_cursor"]
        print("                                  images/s   of raw   images per CPU-second")
        for label, key in (("raw LMDB cursor read (limit)", "raw_cursor"),
                           ("reader (uint8 batches)", "reader_uint8"),
                           ("reader + augment to float32", "reader_augment_float")):
            print("%-32s %9.0f %7.0f%% %12.0f" % (label, figures[key], 100 * figures[key] / raw,
                                                figures[key + "_per_cpu_s"]))
        print("target: reader + augment >= 50%% of raw: %s" % (
            "met" if figures["ratio_reader_augment_to_raw"] >= 0.5 else "NOT met"))
        print("batch %d, crop %d from %dx%d (%.0f KB per record, %.0f KB float32 per augmented image), "
              "%d reader thread(s), %d CPU(s), load average %.1f" % (
                  args.batch, args.crop, args.size, args.size, 3 * args.size ** 2 / 1024,
                  12 * args.crop ** 2 / 1024, args.threads, os.cpu_count() or 1, os.getloadavg()[0]))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(figures, f, indent=1)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return figures


if __name__ == "__main__":
    main(get_args_parser().parse_args())
