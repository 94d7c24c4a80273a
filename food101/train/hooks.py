"""The training engine's hooks: each owns one concern of a run and the state that goes with it.

    Trainer.run (loop.py)                       hook that owns it
    ─────────────────────────────────────────── ─────────────────────────────────────────────
    outputs: config.yaml, train.log,            RunLogging: the Caffe-style log, metrics.jsonl,
      metrics.jsonl; display every N            the smoothed loss, the pending step results
    start-up checks, divergence guard,          RunDiagnostics: food101.diagnostics.Diagnostics
      blob statistics                             and the Action it decides
    test_interval evaluation                    Evaluation: the test net over the test LMDB
    snapshots, the best checkpoint, resume      Checkpoints: what a checkpoint holds, writing it,
                                                  restoring it
    ranks agree to stop, a dead rank            Distributed: food101.train.distributed for this run

A hook never calls another hook; the engine passes what one needs from another (the evaluation
results to Checkpoints.keep_best, the smoothed-loss state to Checkpoints.save).
"""
import dataclasses
import os

import torch

from food101.caffe2 import workspace
from food101.data.augment import Augment
from food101.data.reader import LMDBReader
from food101.diagnostics import Action, Diagnostics
from food101.inference.evaluate import evaluate_batches
from food101 import checkpoint as ckpt
from food101.train import config as C
from food101.train import distributed, schedule
from food101.train.metrics import (JsonlWriter, RunLog, SmoothedLoss, eval_log_lines, read_jsonl,
                                   train_log_lines)
from food101.train.nets import TrainingError


@dataclasses.dataclass
class StepResult:
    """One weight update. The scalars stay on the device until the next display, so a step
    costs no host sync."""
    iteration: int
    loss: torch.Tensor
    accuracy: torch.Tensor
    lr: torch.Tensor
    images: int             # images in the update, over iter_size passes and every rank
    seconds: float          # the step's wall time
    outputs: torch.Tensor = None  # the values of RunLogging.outputs (a Caffe net's outputs)


# ------------------------------------------------------------------------------ logging
class RunLogging:
    """The run's outputs for people and tools: config.yaml, train.log (Caffe-style, tqdm
    progress) and metrics.jsonl; only rank 0 writes them."""

    def __init__(self, cfg, output_dir, stream=None):
        self.cfg = cfg
        self.output_dir = output_dir
        self.stream = stream
        self.smoothed = SmoothedLoss(cfg.solver.average_loss)
        self.pending = []           # StepResults not yet turned into records
        self.records = self.runlog = None
        self._displayed = (0, 0.0)  # (iteration, step seconds) of the last display
        self.outputs = []           # [(blob, loss_weight or None)] shown as "Train net output"

    def path(self, *parts):
        return os.path.join(self.output_dir, *parts)

    def open(self, start_iteration, resumed, is_rank0, smoothed_state=None):
        """Start (or, resumed, continue) the outputs; returns the config.yaml path or None."""
        if smoothed_state:
            self.smoothed.load_state_dict(smoothed_state)
        self._displayed = (start_iteration, 0.0)
        if not is_rank0:
            self.records, self.runlog = distributed.silent_outputs()
            return None
        config_path = self._write_config()
        if not resumed:  # a fresh run starts fresh files
            for name in ("metrics.jsonl", "train.log"):
                if os.path.exists(self.path(name)):
                    os.remove(self.path(name))
        self.records = JsonlWriter(self.path("metrics.jsonl"),
                                   truncate_after=start_iteration if resumed else None)
        self.runlog = RunLog(self.path("train.log"), total=self.cfg.solver.max_iter,
                             initial=start_iteration, progress=self.cfg.train.progress,
                             stream=self.stream, verbose=self.cfg.train.verbose)
        return config_path

    def _write_config(self):
        header = "Effective config of the run in %s (random_seed resolved)." % os.path.abspath(
            self.path())
        paths = {os.path.join(os.path.dirname(C.snapshot_prefix(self.cfg)) or ".", "config.yaml"),
                 self.path("config.yaml")}
        for p in sorted(paths):
            C.dump_config(self.cfg, p, header=header)
        return self.path("config.yaml")

    def info(self, *lines):
        self.runlog.info(*lines)

    def detail(self, *lines):
        """Long detail (statistics tables): train.log, the console only with train.verbose."""
        self.runlog.detail(*lines)

    def write(self, record):
        self.records.write(record)

    def start_lines(self, trainer, config_path):
        cfg = self.cfg
        lines = ["Solving food101 fine-tuning on %s (%s)" % (
                     trainer.device, "bf16 autocast" if cfg.train.bf16 else "fp32"),
                 "Train LMDB %s: %d records, %d classes; batch %d x iter_size %d" % (
                     cfg.data.train_lmdb, trainer.reader.num_records, len(trainer.class_names),
                     cfg.data.batch_size, cfg.solver.iter_size),
                 "Zoo model: %s" % trainer.nets.zoo_note] + [
                     "  " + note for note in trainer.nets.notes] + [
                 "Trained: %d params %s; frozen: %d zoo blobs" % (
                     len(trainer.nets.params), _layer_summary(trainer.nets.params),
                     len(trainer.nets.frozen_blobs)),
                 "Effective config: %s" % config_path]
        if cfg.train.compile and trainer.device.type == "cpu":
            lines.append("Warning: train.compile on a CPU: on a 2-core AVX2 machine compiled nets "
                         "ran 1.21x eager with a frozen backbone but 0.77x eager for full training "
                         "(README, Benchmarks); set train.compile=false if iterations are slower")
        if trainer.resume_from is not None:
            lines.append("Resuming from %s at iteration %d" % (trainer.resume_from["path"],
                                                               trainer.iteration))
        if trainer.dist.enabled:
            lines.append(distributed.describe(trainer.dist, cfg, trainer.lr_factor))
        if not cfg.diagnostics.enabled:  # else the diagnostics' lr_schedule findings say it
            for w in schedule.check(cfg.solver):
                lines.append("LR schedule warning: " + w)
        self.info(*lines)

    def add(self, result):
        self.pending.append(result)

    def forget_after(self, iteration):
        """Drop pending results of iterations the diagnostics undid."""
        self.pending = [p for p in self.pending if p.iteration <= iteration]

    def flush(self, lr_scale):
        """Turn the pending step results into records: one device sync per display.
        images_per_s is the rate over the flushed iterations' step time."""
        if not self.pending:
            return None
        values = torch.stack([torch.cat([torch.stack([p.loss, p.accuracy, p.lr.float().abs()]),
                                         p.outputs if p.outputs is not None else p.loss.new_zeros(0)])
                              for p in self.pending]).cpu().tolist()
        images = sum(p.images for p in self.pending)
        seconds = sum(p.seconds for p in self.pending)
        rate = images / seconds if seconds > 0 else None
        last = None
        for p, (loss, acc, lr, *outs) in zip(self.pending, values):
            lr = lr if lr_scale == 1.0 else lr * lr_scale
            last = {"phase": "train", "iteration": p.iteration, "loss": loss,
                    "smoothed_loss": self.smoothed.add(loss), "lr": lr, "accuracy": acc,
                    "images_per_s": rate}
            if outs and len(outs) == len(self.outputs):
                last["outputs"] = {b: v for (b, _), v in zip(self.outputs, outs)}
            self.records.write(last)
        self.pending = []
        return last

    def display(self, lr_scale, step_seconds):
        last = self.flush(lr_scale)
        if last is None:
            return
        done = last["iteration"] - self._displayed[0]
        seconds = step_seconds - self._displayed[1]
        self._displayed = (last["iteration"], step_seconds)
        iters_per_s = done / seconds if seconds > 0 else float("nan")
        images_per_s = iters_per_s * self.cfg.data.batch_size * self.cfg.solver.iter_size
        outputs = ([(b, last["outputs"][b], w) for b, w in self.outputs]
                   if "outputs" in last else None)
        self.info(*train_log_lines(last["iteration"], last["smoothed_loss"], last["lr"],
                                   last["loss"], last["accuracy"], iters_per_s, images_per_s,
                                   outputs=outputs))
        self.runlog.advance(0, loss=last["smoothed_loss"], lr=last["lr"])

    def advance(self, n=1):
        self.runlog.advance(n)

    def train_records(self):
        path = self.path("metrics.jsonl")
        records = read_jsonl(path) if os.path.exists(path) else []
        return [r for r in records if r.get("phase") == "train"]

    def close(self):
        if self.records is not None:
            self.records.close()
        if self.runlog is not None:
            self.runlog.close()


def _layer_summary(params):
    """"in conv1, fire2 .. fire9, conv10 (10 layers)" for a long param list, "(conv10_w,
    conv10_b)" for a short one."""
    layers = list(dict.fromkeys(p.rsplit("_", 1)[0].split("/")[0] for p in params))
    if len(params) <= 4:  # a classifier alone: its blobs say more than an exporter's layer id
        return "(%s)" % ", ".join(params)
    if len(layers) <= 4:
        return "in " + ", ".join(layers)
    return "in %s, %s .. %s, %s (%d layers)" % (layers[0], layers[1], layers[-2], layers[-1],
                                                len(layers))


# ------------------------------------------------------------------------------ diagnostics
class RunDiagnostics:
    """food101.diagnostics for this run: start-up checks, the guard's Action, statistics."""

    def __init__(self, cfg, output_dir, logging):
        self.diag = Diagnostics(cfg.diagnostics, output_dir=output_dir,
                                num_classes=cfg.model.num_classes, max_iter=cfg.solver.max_iter,
                                log_lines=logging.info, write_record=logging.write,
                                log_detail=logging.detail)
        self.logging = logging

    def start(self, nets, resumed):
        # a resumed run has trained weights: only a fresh one is compared with the zoo's values
        self.diag.on_start([nets.fwd_bwd, nets.update], nets.init, nets.params,
                           workspace.current(), zoo_model=None if resumed else nets.zoo_model,
                           frozen_blobs=nets.frozen_blobs, covered=nets.covered)

    def state_dict(self):
        return self.diag.state_dict()

    def load_state_dict(self, state, nets):
        """A checkpoint's diagnostics state (the guard's lr scaling, ...) into this run."""
        self.diag.load_state_dict(state, workspace.current(), [nets.fwd_bwd.name, nets.update.name])

    def batch_is_quarantined(self, iteration, x, y, keys):
        return self.diag.on_batch(iteration, x, y, keys) == Action.SKIP

    def after_iteration(self, iteration, loss):
        """The Action for the iteration that just ran (float(loss) in the guard: one sync)."""
        return Action(self.diag.after_iteration(iteration, loss, workspace.current()))

    @property
    def resume_iteration(self):
        return self.diag.resume_iteration

    def record_statistics(self, iteration):
        record = self.diag.stats_record(iteration, workspace.current())
        if record:
            self.logging.write(record)


# ------------------------------------------------------------------------------ evaluation
class Evaluation:
    """The test net over the test LMDB every test_interval (rank 0 only) and at the end."""

    def __init__(self, cfg, dist):
        self.cfg = cfg
        self.dist = dist
        self.history = []     # the test records, kept in checkpoints
        self.last = None

    def run(self, trainer, final=False):
        """The evaluation dict, or None (no test LMDB, not rank 0, or Ctrl-C on the way)."""
        cfg = self.cfg
        if not cfg.data.test_lmdb or not self.dist.is_rank0:  # the other ranks go on meanwhile
            return None
        nets, device = trainer.nets, trainer.device
        center = Augment(cfg.data.crop_size, train=False, mean=trainer.input_mean, device=device)
        created = []

        def probabilities(images):
            workspace.FeedTensor(nets.data, center(images))
            if not created:  # the test net reads `data`: created once it exists
                workspace.CreateNet(nets.test, overwrite=True)
                created.append(nets.test.name)
            with trainer.autocast():
                workspace.RunNet(nets.test.name)
            return workspace.FetchTensor(nets.probs)

        with LMDBReader(cfg.data.test_lmdb, cfg.data.test_batch_size, shuffle=False,
                        num_threads=1, pin_memory=device.type == "cuda") as reader:
            results = evaluate_batches(reader, probabilities, trainer.class_names,
                                       num_classes=len(trainer.class_names),
                                       limit_batches=0 if final else cfg.solver.test_iter,
                                       should_stop=lambda: trainer.stop_requested)
        if results is None:
            return None
        results["iteration"] = trainer.iteration
        self.last = results
        record = {"phase": "test", "iteration": trainer.iteration, "top1": results["top1"],
                  "top5": results["top5"], "loss": results["loss"], "images": results["images"]}
        trainer.logging.write(record)
        self.history.append(record)
        trainer.logging.info(*eval_log_lines(trainer.iteration, results,
                                             labels=trainer.nets.test_names))
        return results


# ------------------------------------------------------------------------------ checkpoints
class Checkpoints:
    """What a checkpoint of this run holds, writing it (snapshots, the best, the last) and
    putting one back into the workspace, the reader and the RNGs."""

    def __init__(self, cfg, dist):
        self.cfg = cfg
        self.dist = dist
        self.prefix = C.snapshot_prefix(cfg)
        self.best_path = self.prefix + "_best" + ckpt.SUFFIX
        self.best = {"top1": None, "iteration": None, "path": None}
        self.last = (None, None)    # (iteration, path) of the last checkpoint written

    def payload(self, trainer, smoothed_state, history):
        blobs = {name: workspace.FetchTensor(name) for name in trainer.state_blobs}
        nets = trainer.nets
        return dict(
            iteration=trainer.iteration, blobs=blobs, reader=trainer.reader.state_dict(),
            rng=ckpt.capture_rng(workspace.current(), {"augment": trainer.aug_generator}),
            config=C.to_dict(self.cfg),
            trainer={"smoothed": smoothed_state, "best": dict(self.best),
                     "history": {"eval": history}, "class_names": trainer.class_names,
                     # the guard's lr cut, quarantine, ...: a resume continues the same run
                     "diagnostics": trainer.diagnostics.state_dict()
                     if trainer.diagnostics is not None else {},
                     "test_net": nets.test.SerializeToString(),
                     "io": dict({"data": nets.data, "label": nets.label, "probs": nets.probs,
                                 "crop_size": self.cfg.data.crop_size,
                                 "mean": list(self.cfg.data.mean),
                                 "mean_image": torch.from_numpy(trainer.input_mean)
                                 if self.cfg.data.mean_file else None}, **trainer.resize_info()),
                     "device": str(trainer.device)})

    def save(self, trainer, payload, path=None):
        """A snapshot of iteration `trainer.iteration` (rank 0 only); returns its path."""
        if not self.dist.is_rank0:
            return None
        path = path or ckpt.checkpoint_path(self.prefix, trainer.iteration)
        ckpt.save_checkpoint(path, **payload)
        trainer.logging.info("Snapshotting to %s" % path)
        self.last = (trainer.iteration, path)
        return path

    def saved_at(self, iteration):
        """The checkpoint already written for `iteration`, or None."""
        return self.last[1] if self.last[0] == iteration else None

    def keep_best(self, trainer, results, payload_fn):
        if self.best["top1"] is None or results["top1"] > self.best["top1"]:
            self.best = {"top1": results["top1"], "iteration": trainer.iteration,
                         "path": self.best_path}
            ckpt.save_checkpoint(self.best_path, **payload_fn())
            trainer.logging.info("Best test top-1 so far (%.4f at iteration %d): %s"
                                 % (results["top1"], trainer.iteration, self.best_path))

    def restore(self, trainer, state):
        """Blobs, reader position, RNGs and iteration of `state` into the run; returns the
        trainer-side state (smoothed-loss window, eval history). The diagnostics' state
        (`diagnostics_state`) goes back once the diagnostics exist (RunDiagnostics)."""
        missing = [b for b in trainer.state_blobs if b not in state["blobs"]]
        if missing:
            raise TrainingError("checkpoint %s lacks blobs %s that this config's nets need (was it "
                                "made with another model.* config?)" % (state["path"], missing[:5]))
        for name, value in state["blobs"].items():
            current = workspace.FetchTensor(name) if workspace.HasBlob(name) else None
            if isinstance(current, torch.Tensor) and tuple(current.shape) != tuple(value.shape):
                raise TrainingError("checkpoint %s: blob %r has shape %s, this run's net needs %s"
                                    % (state["path"], name, list(value.shape), list(current.shape)))
            if isinstance(value, torch.Tensor):  # back where this run keeps it (the counter: CPU)
                value = value.to(current.device if isinstance(current, torch.Tensor)
                                 else trainer.device)
            workspace.FeedTensor(name, value)
        try:
            trainer.reader.load_state_dict(state["reader"])
        except ValueError as e:
            raise TrainingError("checkpoint %s: %s (resume with the checkpoint's data.* and "
                                "solver.random_seed)" % (state["path"], e)) from None
        ckpt.restore_rng(state["rng"], workspace.current(), {"augment": trainer.aug_generator})
        trainer.iteration = int(state["iteration"])
        saved = state.get("trainer", {})
        self.best = dict(saved.get("best", self.best))
        trainer.diagnostics_state = saved.get("diagnostics") or {}
        return saved.get("smoothed"), saved.get("history", {}).get("eval", [])


# ------------------------------------------------------------------------------ distributed
class Distributed:
    """The run's place among torchrun ranks (food101.train.distributed): one rank alone is
    world size 1 and every method is a no-op."""

    def __init__(self, ctx):
        self.ctx = ctx

    def agree_to_stop(self, stop_requested):
        """Every rank stops after the same iteration."""
        return distributed.any_rank(stop_requested, self.ctx) if self.ctx.enabled else stop_requested

    def failure(self, error, last_checkpoint):
        """The TrainingError for a collective that failed (a rank died)."""
        return TrainingError(distributed.failure_message(error, last_checkpoint))
