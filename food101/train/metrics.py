"""What a run reports: Caffe-style log lines, the smoothed loss, metrics.jsonl and a progress bar.

Log lines follow Caffe's solver output, so tools written for Caffe logs (parse_log.py and
friends: `Iteration (\\d+), loss = X`, `lr = X`, `Test net output #k: name = X`) read them:

    Iteration 40, loss = 3.1416, lr = 0.01 (12.5 iter/s, 400.0 images/s)
        Train net output #0: accuracy = 0.25
        Train net output #1: loss = 3.0012 (* 1 = 3.0012 loss)
    Iteration 100, Testing net (#0)
        Test net output #0: top1 = 0.41
        Test net output #1: top5 = 0.77
        Test net output #2: loss = 2.1

`loss = ` is the mean of the last `average_loss` iterations (Caffe's smoothed loss); the raw
value of the iteration is the train net output. Every iteration also becomes one JSON line in
metrics.jsonl: {"phase": "train", "iteration", "loss", "smoothed_loss", "lr", "accuracy",
"images_per_s"}; every evaluation one {"phase": "test", "iteration", "top1", "top5", "loss"}.
"""
import collections
import json
import os
import sys
import time

from tqdm import tqdm

from food101.fileio import atomic_write


class SmoothedLoss:
    """Mean of the last `window` values (Caffe's `average_loss`); its state goes into checkpoints."""

    def __init__(self, window):
        self.values = collections.deque(maxlen=max(1, int(window)))

    def add(self, value):
        self.values.append(float(value))
        return self.value

    @property
    def value(self):
        return sum(self.values) / len(self.values) if self.values else float("nan")

    def state_dict(self):
        return {"window": self.values.maxlen, "values": list(self.values)}

    def load_state_dict(self, state):
        self.values = collections.deque(state["values"], maxlen=self.values.maxlen)


def _fmt(x):
    return "%.6g" % x


def train_log_lines(iteration, smoothed_loss, lr, loss, accuracy, iters_per_s=None, images_per_s=None,
                    outputs=None):
    """Caffe's display lines. outputs: [(name, value, loss_weight or None)], the net's outputs
    as Caffe lists them (every loss top with its weight: GoogLeNet's loss1/2/3); default the
    accuracy and the loss."""
    speed = ""
    if iters_per_s is not None and images_per_s is not None:
        speed = " (%.3g iter/s, %.4g images/s)" % (iters_per_s, images_per_s)
    if outputs is None:
        outputs = [("accuracy", accuracy, None), ("loss", loss, 1.0)]
    lines = ["Iteration %d, loss = %s, lr = %s%s" % (iteration, _fmt(smoothed_loss), _fmt(lr), speed)]
    for k, (name, value, weight) in enumerate(outputs):
        weighted = " (* %s = %s loss)" % (_fmt(weight), _fmt(value * weight)) if weight else ""
        lines.append("    Train net output #%d: %s = %s%s" % (k, name, _fmt(value), weighted))
    return lines


def eval_log_lines(iteration, results, names=("top1", "top5", "loss"), labels=None):
    """Caffe's test lines; labels: {"top1": the net's own name ("accuracy"), ...}: only those
    are shown (what the net outputs), listed by name as Caffe lists a net's outputs."""
    if labels:
        shown = sorted((labels[n], n) for n in names if n in results and n in labels)
    else:
        shown = [(n, n) for n in names if n in results]
    lines = ["Iteration %d, Testing net (#0)" % iteration]
    for k, (label, name) in enumerate(shown):
        lines.append("    Test net output #%d: %s = %s" % (k, label, _fmt(results[name])))
    lines.extend("    Finding: %s" % f for f in results.get("findings", ()))
    return lines


class JsonlWriter:
    """Appends one JSON object per line; flushed on every write so a crash loses nothing."""

    def __init__(self, path, truncate_after=None):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if truncate_after is not None:
            keep_records_up_to(path, truncate_after)
        self._f = open(path, "a", encoding="utf-8")

    def write(self, record):
        self._f.write(json.dumps(record, sort_keys=False) + "\n")
        self._f.flush()

    def close(self):
        self._f.close()


def keep_records_up_to(path, iteration):
    """Drop records after `iteration` (a resumed run rewrites what followed its checkpoint)."""
    if not os.path.exists(path):
        return
    # start-up findings carry "iteration": null: they belong to the start, and stay
    kept = [line for line in read_jsonl_lines(path)
            if (json.loads(line).get("iteration") or 0) <= iteration]
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in kept)


def read_jsonl_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def read_jsonl(path):
    return [json.loads(line) for line in read_jsonl_lines(path)]


class RunLog:
    """Log lines to the console (above the progress bar) and to a log file; a tqdm bar on a TTY."""

    def __init__(self, log_path=None, total=None, initial=0, progress=True, stream=None,
                 verbose=False):
        self.stream = stream or sys.stdout
        self.verbose = verbose
        self._file = open(log_path, "a", encoding="utf-8") if log_path else None
        show_bar = progress and sys.stderr.isatty()
        self.bar = tqdm(total=total, initial=initial, disable=not show_bar, unit="it",
                        dynamic_ncols=True, leave=False) if total is not None else None

    def info(self, *lines, console=True):
        for line in lines:
            stamped = "%s %s" % (time.strftime("%H:%M:%S"), line)
            if not console:
                pass
            elif self.bar is not None and not self.bar.disable:
                self.bar.write(line, file=self.stream)
            else:
                print(line, file=self.stream, flush=True)
            if self._file:
                self._file.write(stamped + "\n")
        if self._file:
            self._file.flush()

    def detail(self, *lines):
        """Long detail (statistics tables): the log file, and the console only when verbose."""
        self.info(*lines, console=self.verbose)

    def advance(self, n=1, **postfix):
        if self.bar is not None and not self.bar.disable:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix({k: _fmt(v) for k, v in postfix.items()}, refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        if self._file:
            self._file.close()
            self._file = None
