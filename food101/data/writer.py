"""Building a Food-101 split into an LMDB of Caffe2 TensorProtos records.

    meta/<split>.txt --validate--> items --seeded shuffle--> chunks of 8
                                                               |
          +-----------------+-----------------+                |  (at most 4 chunks per
          v                 v                 v                |   worker in flight)
     worker process    worker process    worker process   <----+
     read, classify, decode (OpenCV), resize, CHW, serialize TensorProtos
          |                 |                 |
          +--------> parent, in shuffled order: key, txn.put (append), tqdm
                                   |
                       <out>.tmp-<pid>/  --(complete)--> rename to <out>/

Guarantees:
- Layout problems (missing class folder, a meta line naming no file) raise `LayoutError` before
  anything is created. An existing output is refused unless `overwrite=True`.
- Bad files never stop a build: each is skipped (or, for grayscale/CMYK, converted) and listed
  with its reason in `<out>/build_report.json` and `<out>/bad_files.txt`.
- Nothing appears under the final name until the database is complete: records go to
  `<out>.tmp-<pid>`, which is renamed at the end (the old output, with `overwrite`, is replaced
  only then). On an exception, Ctrl-C or SIGTERM the temporary folder is deleted; after SIGKILL it
  stays under its temporary name and the next build removes it.
- Memory stays bounded: a fixed number of images is in flight and records are committed every
  few megabytes; the map grows (doubling) whenever LMDB reports it full.

Keys are f"{position:08d}_{class}/{id}": they sort in the seeded shuffled order, so a plain
cursor (Caffe2's own DB readers) walks shuffled data, and each key names its source image.
Metadata goes to `<out>/food101_meta.json` next to data.mdb (not into the database, so readers
that walk every record see only images).
"""
import concurrent.futures
import contextlib
import importlib.machinery
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import cv2
import lmdb
import numpy as np

from food101.data.decode import INTERPOLATIONS, RESIZE_MODES, BadImage, load_image, to_chw
from food101.data.layout import LAYOUT_VERSION, Food101Layout
from food101.data.records import encode_record

META_FILE = "food101_meta.json"
REPORT_FILE = "build_report.json"
BAD_FILES_TXT = "bad_files.txt"
FORMAT_NAME = "food101-tensorprotos-lmdb"
FORMAT_VERSION = 1
KEY_FORMAT = "{position:08d}_{image_id}"

_CHUNK = 8                     # images per worker task
# a chunk decodes in well under a second: a silent worker for this long is stuck, not busy
_WORKER_TIMEOUT_S = 300
_INFLIGHT_PER_WORKER = 4       # chunks queued per worker
_COMMIT_BYTES = 32 << 20       # commit a write transaction every ~32 MB


class OutputExistsError(FileExistsError):
    pass


class BuildError(RuntimeError):
    pass


class BuildInterrupted(KeyboardInterrupt):
    """SIGTERM during a build (handled like Ctrl-C: the temporary output is removed)."""


@dataclass
class BuildSummary:
    out: str
    split: str
    size: int
    resize: str
    interpolation: str
    classes: list
    num_records: int = 0
    per_class: dict = field(default_factory=dict)
    bad: list = field(default_factory=list)          # [(image_id, reason)]
    converted: list = field(default_factory=list)    # [(image_id, note)]
    mean_bgr: tuple = (0.0, 0.0, 0.0)
    std_bgr: tuple = (0.0, 0.0, 0.0)
    seconds: float = 0.0
    workers: int = 0
    map_size: int = 0
    bytes_written: int = 0

    @property
    def images_per_second(self):
        return (self.num_records + len(self.bad)) / self.seconds if self.seconds else 0.0

    @property
    def images_per_second_per_worker(self):
        return self.images_per_second / max(1, self.workers)

    def format(self):
        lines = [
            "wrote %s: %d records (%s split, %d classes, %dx%d, resize=%s)" % (
                self.out, self.num_records, self.split, len(self.classes), self.size, self.size,
                self.resize),
            "  %.1f s, %.0f images/s (%.0f per worker, %d worker%s), %.1f MB" % (
                self.seconds, self.images_per_second, self.images_per_second_per_worker,
                self.workers, "s" * (self.workers != 1), self.bytes_written / 1e6),
            "  mean BGR %.2f %.2f %.2f, std %.2f %.2f %.2f" % (tuple(self.mean_bgr) + tuple(self.std_bgr)),
            "  skipped %d bad file(s), converted %d" % (len(self.bad), len(self.converted)),
        ]
        for image_id, reason in self.bad[:10]:
            lines.append("    skipped %s: %s" % (image_id, reason))
        if len(self.bad) > 10:
            lines.append("    ... %d more in %s" % (len(self.bad) - 10, os.path.join(self.out, BAD_FILES_TXT)))
        for image_id, note in self.converted[:5]:
            lines.append("    converted %s: %s" % (image_id, note))
        counts = sorted(self.per_class.items(), key=lambda kv: kv[1])
        if counts:
            lines.append("  per class: min %d (%s), max %d (%s)" % (
                counts[0][1], counts[0][0], counts[-1][1], counts[-1][0]))
        return "\n".join(lines)


# ------------------------------------------------------------------------------ worker side
def _worker_init(parent_pid):
    """Workers ignore Ctrl-C (the parent cleans up), use one OpenCV thread each, and exit if
    the parent dies (after SIGKILL nobody would tell them)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import cv2
    cv2.setNumThreads(1)

    def watch():    # the building process, not os.getppid() (that is the forkserver)
        while _pid_alive(parent_pid):
            time.sleep(1.0)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def decode_chunk(tasks, size, resize, interpolation):
    """[(path, label)] -> [(record bytes | None, note | reason, mean BGR, mean square BGR)]."""
    out = []
    for path, label in tasks:
        try:
            image, note = load_image(path, size, resize, interpolation)
        except BadImage as e:
            out.append((None, str(e), None, None))
            continue
        except Exception as e:  # an unexpected decoder failure is still just one bad file
            out.append((None, "decoder error: %s: %s" % (type(e).__name__, e), None, None))
            continue
        mean, std = cv2.meanStdDev(image)
        mean, std = mean.reshape(3), std.reshape(3)
        out.append((encode_record(to_chw(image), label), note, mean, std * std + mean * mean))
    return out


# ------------------------------------------------------------------------------ parent side
def _mp_context(start_method):
    """forkserver on Linux: workers fork from a clean server process that has imported this
    module once (plain fork from a parent whose OpenCV or torch thread pools are running can
    deadlock in the child). spawn elsewhere; both need only importable top-level functions."""
    import multiprocessing
    methods = multiprocessing.get_all_start_methods()
    if start_method is None:
        start_method = "forkserver" if sys.platform.startswith("linux") and "forkserver" in methods else "spawn"
    ctx = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload([__name__])
    return ctx


@contextlib.contextmanager
def _caller_not_reimported():
    """While decode workers start, the caller's main script is not re-run in them.

    spawn and forkserver workers re-import a plain script's `__main__` (as __mp_main__), so a
    script without an `if __name__ == "__main__":` guard - the README's snippet saved as x.py -
    would run again in every worker and fail there. multiprocessing leaves `__main__` alone
    when its module spec names "__main__" (as for `python -m` and interactive sessions), so the
    script is given that spec while the workers start. The workers need only this module."""
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)
    try:
        yield
    finally:
        main.__spec__ = None


class _Decoder:
    """Ordered, bounded decoding: in-process when workers == 0, else a process pool."""

    def __init__(self, items, size, resize, interpolation, workers, start_method):
        self.items, self.args = items, (size, resize, interpolation)
        self.pool = None
        if workers > 0:
            self.pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=workers, mp_context=_mp_context(start_method), initializer=_worker_init,
                initargs=(os.getpid(),))
        self.window = max(1, workers) * _INFLIGHT_PER_WORKER
        self.pending = deque()
        self.next_start = 0

    def _submit(self):
        while self.pool and len(self.pending) < self.window and self.next_start < len(self.items):
            chunk = self.items[self.next_start:self.next_start + _CHUNK]
            tasks = [(item.path, item.label) for item in chunk]
            with _caller_not_reimported():     # submit() starts the worker processes
                self.pending.append((chunk, self.pool.submit(decode_chunk, tasks, *self.args)))
            self.next_start += len(chunk)

    def start(self):
        self._submit()

    def __iter__(self):
        if self.pool is None:
            for start in range(0, len(self.items), _CHUNK):
                chunk = self.items[start:start + _CHUNK]
                results = decode_chunk([(i.path, i.label) for i in chunk], *self.args)
                yield from zip(chunk, results)
            return
        while self.pending:
            chunk, future = self.pending.popleft()
            try:
                results = future.result(timeout=_WORKER_TIMEOUT_S)
            except concurrent.futures.TimeoutError:
                raise BuildError("no decode worker answered for %d s while decoding %s ...; rerun "
                                 "with --workers 0 to decode in-process" % (
                                     _WORKER_TIMEOUT_S, chunk[0].path)) from None
            except concurrent.futures.process.BrokenProcessPool as e:
                raise BuildError("a decode worker died while decoding one of %s (%s); rerun with "
                                 "--workers 0 to find the file" % ([i.path for i in chunk], e)) from None
            self._submit()
            yield from zip(chunk, results)

    def close(self, abort=False):
        """Stop the workers; `abort` (an error or interrupt) kills them instead of waiting."""
        if self.pool is None:
            return
        pool, self.pool = self.pool, None
        if abort:
            processes = list(getattr(pool, "_processes", {}).values())  # no public handle
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                if process.is_alive():
                    process.terminate()
            for process in processes:
                process.join(5)
        else:
            pool.shutdown(wait=True, cancel_futures=True)


class _Writer:
    """Appends records in transactions of ~32 MB, doubling the map when LMDB says it is full."""

    def __init__(self, path, map_size):
        self.env = lmdb.open(path, map_size=map_size, subdir=True, sync=False, metasync=False,
                             readahead=False, meminit=False, max_dbs=0)
        self.batch, self.batch_bytes, self.bytes_written = [], 0, 0

    def put(self, key, value):
        self.batch.append((key, value))
        self.batch_bytes += len(value)
        if self.batch_bytes >= _COMMIT_BYTES:
            self.commit()

    def commit(self):
        while self.batch:
            try:
                with self.env.begin(write=True) as txn:
                    for key, value in self.batch:
                        if not txn.put(key, value, append=True, overwrite=False):
                            raise BuildError("duplicate key %r" % key)
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
                continue
            self.bytes_written += self.batch_bytes
            self.batch, self.batch_bytes = [], 0

    def close(self):
        self.commit()
        self.env.sync(True)
        map_size = self.env.info()["map_size"]
        self.env.close()
        return map_size


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(out):
    """Delete `<out>.tmp-<pid>` folders left by builds that were killed (their pid is gone)."""
    parent, base = os.path.split(out)
    prefix = base + ".tmp-"
    removed = []
    for name in os.listdir(parent or "."):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            pid = int(name[len(prefix):])
            if pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
                removed.append(name)
    return removed


def _looks_like_lmdb(path):
    if os.path.isfile(path):
        return False
    names = set(os.listdir(path))
    return not names or "data.mdb" in names


class _TermAsInterrupt:
    """Turn SIGTERM into BuildInterrupted while a build runs (main thread only)."""

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            def handler(signum, frame):
                raise BuildInterrupted("build terminated by signal %d" % signum)
            self.previous = signal.signal(signal.SIGTERM, handler)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def build_lmdb(root, split, out, *, size=256, resize="crop", interpolation="area", workers=None,
               limit_per_class=None, classes=None, seed=0, overwrite=False, progress=True,
               start_method=None, map_size=None):
    """Write `split` of the Food-101 layout at `root` to the LMDB folder `out`.

    size: stored images are size x size (see decode.resize_image: shorter side to `size`,
    centre crop; resize="stretch" for a plain resize; interpolation "area" or "linear" when
    shrinking). workers: decode processes (None: CPU
    count, 0: in this process). classes / limit_per_class: a subset (labels then index the
    selected classes in classes.txt order). seed: the shuffled record order. Returns a
    BuildSummary; raises LayoutError, OutputExistsError, BuildError."""
    if resize not in RESIZE_MODES:
        raise ValueError("resize must be one of %s, got %r" % (RESIZE_MODES, resize))
    if interpolation not in INTERPOLATIONS:
        raise ValueError("interpolation must be one of %s, got %r" % (tuple(INTERPOLATIONS), interpolation))
    if not isinstance(size, int) or size < 1:
        raise ValueError("size must be a positive int, got %r" % (size,))
    out = os.path.abspath(out)
    if os.path.exists(out):
        if not overwrite:
            raise OutputExistsError("%s already exists; pass --overwrite to replace it" % out)
        if not _looks_like_lmdb(out):
            raise OutputExistsError("%s exists and is not an LMDB folder; refusing to replace it "
                                    "even with --overwrite" % out)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    remove_stale_temporaries(out)

    layout = Food101Layout(root)
    items = layout.items(split, classes=classes, limit_per_class=limit_per_class)
    selected = layout.select_classes(classes)
    if len(items) >= 10 ** 8:
        raise BuildError("key format holds at most 10^8 records")
    order = np.random.default_rng(seed).permutation(len(items))
    items = [items[i] for i in order]
    workers = (os.cpu_count() or 1) if workers is None else max(0, int(workers))

    summary = BuildSummary(out=out, split=split, size=size, resize=resize,
                           interpolation=interpolation, classes=selected, workers=max(1, workers))
    tmp = "%s.tmp-%d" % (out, os.getpid())
    started = time.perf_counter()
    decoder = writer = None
    try:
        with _TermAsInterrupt():
            os.makedirs(tmp)
            decoder = _Decoder(items, size, resize, interpolation, workers, start_method)
            decoder.start()    # fork the workers before the LMDB environment exists
            record_bytes = 3 * size * size + 64
            writer = _Writer(tmp, map_size or max(1 << 24, int(record_bytes * len(items) * 1.1)))
            summary.per_class = {c: 0 for c in selected}
            sums, sq_sums = np.zeros(3), np.zeros(3)
            from tqdm import tqdm
            with tqdm(total=len(items), unit="img", desc="%s %s" % (split, os.path.basename(out)),
                      disable=not progress, dynamic_ncols=True, mininterval=0.5) as bar:
                for item, (record, note, mean, sq) in decoder:
                    bar.update(1)
                    if record is None:
                        summary.bad.append((item.image_id, note))
                        bar.set_postfix(skipped=len(summary.bad), refresh=False)
                        continue
                    if note:
                        summary.converted.append((item.image_id, note))
                    key = KEY_FORMAT.format(position=summary.num_records, image_id=item.image_id)
                    writer.put(key.encode("utf-8"), record)
                    summary.num_records += 1
                    summary.per_class[item.class_name] += 1
                    sums += mean
                    sq_sums += sq
            decoder.close()
            if summary.num_records == 0:
                raise BuildError("no image of %s could be decoded; first problems: %s" % (
                    split, "; ".join("%s: %s" % b for b in summary.bad[:5])))
            summary.map_size = writer.close()
            summary.bytes_written = writer.bytes_written
            writer = None
            n = summary.num_records
            summary.mean_bgr = tuple(float(v) for v in sums / n)
            summary.std_bgr = tuple(float(v) for v in np.sqrt(np.maximum(sq_sums / n - (sums / n) ** 2, 0)))
            summary.seconds = time.perf_counter() - started
            _write_side_files(tmp, summary, layout, seed)
            _install(tmp, out, overwrite)
    finally:
        if decoder is not None:
            decoder.close(abort=True)
        if writer is not None:
            writer.env.close()
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _write_side_files(folder, summary, layout, seed):
    label_names = dict(zip(layout.classes, layout.labels))
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "layout_version": LAYOUT_VERSION,
        "source_root": layout.root,
        "split": summary.split,
        "classes": list(summary.classes),
        "labels": [label_names[c] for c in summary.classes],
        "num_classes": len(summary.classes),
        "num_records": summary.num_records,
        "per_class_counts": summary.per_class,
        "image": {"dims": [3, summary.size, summary.size], "data_type": "BYTE", "dtype": "uint8",
                  "layout": "CHW", "channels": "BGR"},
        "label": {"data_type": "INT32"},
        "size": summary.size,
        "resize": summary.resize,
        "interpolation": summary.interpolation,
        "mean_bgr": list(summary.mean_bgr),
        "std_bgr": list(summary.std_bgr),
        "seed": seed,
        "key_format": KEY_FORMAT,
        "skipped": len(summary.bad),
        "converted": len(summary.converted),
    }
    report = {
        "split": summary.split,
        "num_records": summary.num_records,
        "skipped": [{"image": i, "reason": r} for i, r in summary.bad],
        "converted": [{"image": i, "note": r} for i, r in summary.converted],
        "seconds": round(summary.seconds, 3),
        "workers": summary.workers,
    }
    with open(os.path.join(folder, META_FILE), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
    with open(os.path.join(folder, REPORT_FILE), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(folder, BAD_FILES_TXT), "w", encoding="utf-8") as f:
        for image_id, reason in summary.bad:
            f.write("skipped\t%s\t%s\n" % (image_id, reason))
        for image_id, note in summary.converted:
            f.write("converted\t%s\t%s\n" % (image_id, note))


def _install(tmp, out, overwrite):
    """Move the finished database to its final name; the old one goes only after that."""
    if os.path.exists(out):
        if not overwrite:
            raise OutputExistsError("%s appeared while building; the new database was discarded" % out)
        old = "%s.old-%d" % (out, os.getpid())
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


def read_metadata(path):
    """The builder's metadata of an LMDB folder, or None (e.g. an LMDB written by Caffe2)."""
    meta_path = os.path.join(path, META_FILE)
    if not os.path.isfile(meta_path):
        return None
    with open(meta_path, encoding="utf-8") as f:
        return json.load(f)
