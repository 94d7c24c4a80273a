"""The training driver: Caffe2 nets built with ModelHelper/brew/optimizer, run by the workspace.

    LMDBReader (threads, pinned)          Augment (on the device, its own generator)
    uint8 N x 3 x S x S  ──copy──►  random crop + mirror + mean  ──FeedTensor("data")──┐
    labels int32         ──copy──────────────────────────────────FeedTensor("label")──┤
                                                                                       ▼
    ┌─ net <name>_fwd_bwd ──────────────────────────────────────────────────────────────────┐
    │ frozen zoo backbone ─► StopGradient ─► new classifier ─► softmax ─► loss, accuracy    │
    │ AutogradGradient (<param>_grad)   [iter_size > 1: Sum into <param>_grad_acc]          │
    └───────────────────────────────────────────── run iter_size times per update ──────────┘
    ┌─ net <name>_update ───────────────────────────────────────────────────────────────────┐
    │ [iter_size > 1: <param>_grad = <param>_grad_acc / iter_size; reset the accumulator]   │
    │ weight decay, Iter, LearningRate, MomentumSGDUpdate (per-param lr multipliers)        │
    └───────────────────────────────────────────────────────────────────────────────────────┘

The train model is one ModelHelper net, built by `food101.zoo.finetune` and
`food101.caffe2.optimizer`, then split at its AutogradGradient op into the two nets above, so
gradient accumulation adds two tiny ops and bf16 autocast wraps only the forward/backward part
(params, gradients and the update stay float32).

Iteration i (1-based) is the i-th weight update; its LearningRate op sees ITER = i, exactly as
Caffe2's build_sgd sets it up. Evaluation every `test_interval`, checkpoints every `snapshot`
(after the evaluation of the same iteration, so they carry its best accuracy) and at the end.
Resuming restores blobs, reader position and every RNG, so 2N iterations equal N + resume + N.

Ctrl-C: the first SIGINT sets a flag; the loop stops at the end of the current iteration, writes
a checkpoint and `fine_tune` returns with `interrupted=True` (tools/train.py exits 130). A
second Ctrl-C interrupts at once.
"""
import collections
import contextlib
import dataclasses
import json
import logging
import os
import random
import signal
import threading
import time

import numpy as np
import torch

from food101.caffe2 import core, workspace
from food101.caffe2.executor import AUTOGRAD_OP
from food101.caffe2.utils import ArgsToDict, external_reads
from food101.caffe2.proto import caffe2_pb2
from food101.train import checkpoint as ckpt
from food101.train import config as C
from food101.train import distributed
from food101.inference.evaluate import ClassificationMetrics, write_results
from food101.train.metrics import JsonlWriter, RunLog, SmoothedLoss, eval_log_lines, train_log_lines

log = logging.getLogger(__name__)

WORKSPACE = "food101_train"


class TrainingError(RuntimeError):
    """The run cannot start or go on (no GPU for --gpu, missing LMDB, a bad checkpoint, ...)."""


# ------------------------------------------------------------------------------ device
def select_device(solver):
    """(torch.device, caffe2 DeviceOption) for solver_mode/device_id; a clear error without CUDA."""
    if solver.solver_mode == "GPU":
        if not torch.cuda.is_available():
            raise TrainingError("--gpu was given but no CUDA GPU is available (solver_mode GPU; "
                                "torch.cuda.is_available() is False, torch %s%s); train on the CPU "
                                "with --cpu or run on a machine with an NVIDIA GPU and a CUDA build "
                                "of torch" % (torch.__version__,
                                              "" if torch.version.cuda else ", a CPU-only build"))
        if solver.device_id >= torch.cuda.device_count():
            raise TrainingError("--gpu %d: only %d CUDA device(s) exist (ids 0..%d)" % (
                solver.device_id, torch.cuda.device_count(), torch.cuda.device_count() - 1))
        return (torch.device("cuda", solver.device_id),
                core.DeviceOption(caffe2_pb2.CUDA, solver.device_id))
    return torch.device("cpu"), core.DeviceOption(caffe2_pb2.CPU)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)
    workspace.seed(seed)


@contextlib.contextmanager
def own_workspace(name=WORKSPACE):
    """Run in a fresh workspace of our own; the caller's current workspace is restored after."""
    previous = workspace.CurrentWorkspace()
    workspace.SwitchWorkspace(name, create_if_missing=True)
    workspace.ResetWorkspace()
    try:
        yield workspace.current()
    finally:
        workspace.SwitchWorkspace(previous)


# ------------------------------------------------------------------------------ nets
@dataclasses.dataclass
class TrainingNets:
    """The nets of a run and the blob names the driver feeds and reads."""
    fwd_bwd: caffe2_pb2.NetDef
    update: caffe2_pb2.NetDef
    test: caffe2_pb2.NetDef
    init: list                      # NetDefs run once (param init, optimizer state)
    data: str                       # float NCHW input (augmented, mean subtracted)
    label: str
    loss: str
    accuracy: str
    probs: str                      # class probabilities of the test net
    params: list                    # trained params
    lr_blob: str                    # the LearningRate output logged as "lr"
    lr_scale: float                 # 1.0, or base_lr / that op's base_lr (lr multipliers)
    class_names: list
    deploy: object = None           # the train ModelHelper (model.finetune.deploy for export)
    zoo_note: str = ""              # which zoo weights (real, or the stand-in and why)
    frozen_blobs: list = dataclasses.field(default_factory=list)
    zoo_model: object = None        # the zoo model as loaded (its pretrained values)


def split_at_gradient(netdef, name):
    """(forward+backward ops, update ops) of a train net, split after its AutogradGradient op."""
    index = next((i for i, op in enumerate(netdef.op) if op.type == AUTOGRAD_OP), None)
    if index is None:
        raise TrainingError("the train net %r has no gradient op; call AddGradientOperators "
                            "before building the optimizer" % netdef.name)
    fwd_bwd = caffe2_pb2.NetDef()
    fwd_bwd.CopyFrom(netdef)
    fwd_bwd.name = name + "_fwd_bwd"
    del fwd_bwd.op[index + 1:]
    update = caffe2_pb2.NetDef()
    update.CopyFrom(netdef)
    update.name = name + "_update"
    del update.op[:index + 1]
    return fwd_bwd, update


def add_accumulation(fwd_bwd, update, grads, iter_size):
    """Gradient accumulation in Caffe2 ops: each forward/backward pass adds its gradients into
    <grad>_acc; the update net first sets <grad> = <grad>_acc / iter_size, and after the update
    zeroes the accumulator for the next one. Returns {accumulator: gradient} to initialise."""
    accumulators = {}
    for grad in grads:
        acc = grad + "_acc"
        accumulators[acc] = grad
        fwd_bwd.op.extend([core.CreateOperator("Sum", [acc, grad], [acc])])
    scale_ops = [core.CreateOperator("Scale", [acc], [grad], scale=1.0 / iter_size)
                 for acc, grad in accumulators.items()]
    reset_ops = [core.CreateOperator("Scale", [acc], [acc], scale=0.0) for acc in accumulators]
    ops = scale_ops + list(update.op) + reset_ops
    del update.op[:]
    update.op.extend(ops)
    return accumulators


# ------------------------------------------------------------------------------ the trainer
class Trainer:
    """One training run. `Trainer(cfg).run()`; `resume=` a checkpoint path or folder."""

    def __init__(self, cfg, resume=None, stream=None):
        self.resume_from = ckpt.load_checkpoint(resume) if resume else None
        if self.resume_from is not None and cfg.solver.random_seed < 0:
            seed = (self.resume_from.get("config") or {}).get("solver", {}).get("random_seed", -1)
            cfg = C.merge(cfg, {"solver.random_seed": seed}, "checkpoint seed") if seed >= 0 else cfg
        self.cfg = C.validate(C.resolve_seed(cfg))
        self.cfg, self.dist = distributed.join(self.cfg, error=TrainingError)  # torchrun ranks
        self.lr_factor = 1.0
        self.stream = stream
        self.device, self.device_option = select_device(self.cfg.solver)
        self.iteration = 0
        self.best = {"top1": None, "iteration": None, "path": None}
        self.last_eval = None
        self.stop_requested = False
        self.history = {"eval": []}
        self._pending = []  # (iteration, loss tensor, accuracy tensor, lr tensor, images)
        self._in_step = False
        self.step_seconds = 0.0
        self._in_flight = collections.deque()

    # -------------------------------------------------------------------------- paths
    def path(self, *parts):
        return os.path.join(self.cfg.train.output_dir, *parts)

    @property
    def snapshot_prefix(self):
        return C.snapshot_prefix(self.cfg)

    @property
    def best_path(self):
        return self.snapshot_prefix + "_best" + ckpt.SUFFIX

    # -------------------------------------------------------------------------- setup
    def setup(self):
        cfg = self.cfg
        data = cfg.data
        for key in ("train_lmdb",) + (("test_lmdb",) if data.test_lmdb else ()):
            path = getattr(data, key)
            if not path:
                raise TrainingError("data.%s is not set: build one with tools/build_lmdb.py and "
                                    "pass --train-lmdb/--set data.%s=PATH" % (key, key))
            if not os.path.exists(path):
                raise TrainingError("data.%s: %s does not exist (tools/build_lmdb.py writes it)"
                                    % (key, path))
        os.makedirs(self.path(), exist_ok=True)
        seed = cfg.solver.random_seed
        seed_everything(seed)
        from food101.data.reader import LMDBReader
        pin = self.device.type == "cuda"
        self.reader = LMDBReader(data.train_lmdb, data.batch_size, shuffle=data.shuffle, seed=seed,
                                 pin_memory=pin, num_threads=1, prefetch=4,
                                 **distributed.reader_shard(self.dist))
        if data.device_resident:
            from food101.data.resident import DeviceResidentDataset
            self.reader = DeviceResidentDataset(self.reader, self.device, progress=cfg.train.progress)
        self.class_names = self._class_names(self.reader)
        if len(self.class_names) != cfg.model.num_classes:
            raise TrainingError("model.num_classes is %d but %s has %d classes (%s); set "
                                "--set model.num_classes=%d" % (
                                    cfg.model.num_classes, data.train_lmdb, len(self.class_names),
                                    ", ".join(self.class_names[:6]) + (" ..." if len(self.class_names) > 6 else ""),
                                    len(self.class_names)))
        _, _, h, w = (0,) + tuple(self.reader.image_shape)
        if data.crop_size > min(h, w):
            raise TrainingError("data.crop_size %d is larger than the %dx%d images of %s" % (
                data.crop_size, h, w, data.train_lmdb))
        from food101.data.augment import Augment
        self.aug_generator = torch.Generator().manual_seed(seed + 1)
        self.augment = Augment(data.crop_size, train=True, mirror=data.mirror, mean=data.mean,
                               device=self.device, generator=self.aug_generator)
        self.nets = build_training_nets(cfg, self.class_names, self.device_option)
        self.lr_factor = distributed.prepare_training_nets(self.nets, cfg, self.dist)
        for net in self.nets.init:
            workspace.RunNetOnce(net)
        from food101.zoo import frozen_checksums
        self.frozen_before = frozen_checksums(self.nets.frozen_blobs)  # the zoo's own values
        self.accumulators = {}
        if cfg.solver.iter_size > 1:
            grads = ["%s_grad" % p for p in self.nets.params]
            self.accumulators = add_accumulation(self.nets.fwd_bwd, self.nets.update, grads,
                                                 cfg.solver.iter_size)
        self._zero_accumulators()
        self._feed_batch(*self._placeholder_batch())
        workspace.CreateNet(self.nets.fwd_bwd, overwrite=True, compile=self._compile_options())
        # The update net reads the gradients fwd_bwd writes: declared, not yet computed.
        written = {o for op in self.nets.fwd_bwd.op for o in op.output}
        workspace.CreateNet(self.nets.update, overwrite=True, compile=self._compile_options(),
                            input_blobs=[b for b in external_reads(self.nets.update) if b in written])
        self.state_blobs = self._state_blob_names()
        if self.resume_from is not None:
            self._restore(distributed.localize_checkpoint(self.resume_from, self.reader, self.dist,
                                                          error=TrainingError))

    def _class_names(self, reader):
        cfg = self.cfg
        if cfg.data.classes_file:
            with open(cfg.data.classes_file, encoding="utf-8") as f:
                return [line.strip() for line in f if line.strip()]
        if reader.classes:
            return list(reader.classes)
        from food101.zoo.surgery import food101_classes
        return food101_classes()

    def resize_info(self):
        """How the training images were resized (build_lmdb's size/resize), for predict."""
        meta = self.reader.meta or {}
        return {"resize_size": int(meta.get("size", self.reader.image_shape[-1])),
                "resize": meta.get("resize", "crop")}

    def _zero_accumulators(self):
        for acc, grad in self.accumulators.items():
            param = grad[: -len("_grad")]
            workspace.FeedTensor(acc, torch.zeros_like(workspace.FetchTensor(param)))

    def _state_blob_names(self):
        fed = {self.nets.data, self.nets.label}
        computed = {o for op in self.nets.fwd_bwd.op for o in op.output} - set(external_reads(self.nets.fwd_bwd))
        names = []
        for net in (self.nets.fwd_bwd, self.nets.update):
            names += [b for b in external_reads(net) if b not in fed and b not in computed and b not in names]
        if self.nets.lr_blob and self.nets.lr_blob not in names:
            names.append(self.nets.lr_blob)
        return [n for n in names if workspace.HasBlob(n)]

    # -------------------------------------------------------------------------- data
    def _next_train_batch(self):
        images, labels = self.reader.next_batch()
        x = self.augment(images)  # on CUDA: a non_blocking copy from the reader's pinned batch
        y = torch.as_tensor(labels).to(self.device, non_blocking=True)  # numpy, or device-resident
        if self.device.type == "cuda" and isinstance(images, np.ndarray):
            self._keep_until_copied(images)
        return x, y

    def _keep_until_copied(self, host_batch, depth=4):
        """Hold a pinned host batch until its asynchronous copy is done, so its memory is not
        reused (by the reader's next batch) while the GPU still reads it."""
        done = torch.cuda.Event()
        done.record()
        self._in_flight.append((done, host_batch))
        while len(self._in_flight) > depth:
            event, _ = self._in_flight.popleft()
            event.synchronize()  # long finished in practice: costs nothing

    def _placeholder_batch(self):
        """Zeros of the batch's shape and dtype: CreateNet checks inputs exist, reading no data."""
        n, crop = self.cfg.data.batch_size, self.cfg.data.crop_size
        channels = self.reader.image_shape[0]
        return (torch.zeros((n, channels, crop, crop), device=self.device),
                torch.zeros(n, dtype=torch.int32, device=self.device))

    def _feed_batch(self, x, y):
        workspace.FeedTensor(self.nets.data, x)
        workspace.FeedTensor(self.nets.label, y)

    # -------------------------------------------------------------------------- one iteration
    def _autocast(self):
        """bf16 autocast around the forward/backward net (compiled nets do it themselves)."""
        if not self.cfg.train.bf16 or self.cfg.train.compile:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _compile_options(self):
        if not self.cfg.train.compile:
            return None
        from food101.caffe2.compiled import CompileOptions
        return CompileOptions(autocast="bfloat16" if self.cfg.train.bf16 else None)

    def step(self):
        """One weight update: iter_size forward/backward passes, then the update net."""
        t0 = time.perf_counter()
        self._in_step = True
        distributed.decorrelate_rngs(self.cfg.solver.random_seed, self.iteration, self.dist,
                                     workspace.current(), [self.aug_generator])
        losses, accs = [], []
        for k in range(self.cfg.solver.iter_size):
            x, y = self._next_train_batch()
            while k == 0 and self.diag.on_batch(self.iteration + 1, x, y,
                                                getattr(self.reader, "last_keys", None)) == "skip":
                x, y = self._next_train_batch()  # the batch holds a quarantined record
            self._feed_batch(x, y)
            with self._autocast():
                workspace.RunNet(self.nets.fwd_bwd.name)
            losses.append(workspace.FetchTensor(self.nets.loss).detach().float().reshape(()))
            accs.append(workspace.FetchTensor(self.nets.accuracy).detach().float().reshape(()))
        workspace.RunNet(self.nets.update.name)
        self.iteration += 1
        self._in_step = False
        loss = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
        acc = accs[0] if len(accs) == 1 else torch.stack(accs).mean()
        lr = workspace.FetchTensor(self.nets.lr_blob).detach().reshape(-1)[0]
        images = self.cfg.data.batch_size * self.cfg.solver.iter_size * self.dist.world_size
        seconds = time.perf_counter() - t0
        self.step_seconds += seconds
        self._pending.append((self.iteration, loss, acc, lr, images, seconds))

    def _flush(self):
        """Turn the pending per-iteration tensors into numbers and records: one device sync per
        display. images_per_s is the rate over the flushed iterations' step time."""
        if not self._pending:
            return None
        values = torch.stack([torch.stack([p[1], p[2], p[3].float().abs()])
                              for p in self._pending]).cpu().tolist()
        images = sum(p[4] for p in self._pending)
        seconds = sum(p[5] for p in self._pending)
        rate = images / seconds if seconds > 0 else None
        last = None
        for p, (loss, acc, lr) in zip(self._pending, values):
            lr = lr if self.nets.lr_scale == 1.0 else lr * self.nets.lr_scale
            last = {"phase": "train", "iteration": p[0], "loss": loss,
                    "smoothed_loss": self.smoothed.add(loss), "lr": lr, "accuracy": acc,
                    "images_per_s": rate}
            self.records.write(last)
        self._pending = []
        return last

    # -------------------------------------------------------------------------- evaluation
    def evaluate(self, final=False):
        cfg = self.cfg
        if not cfg.data.test_lmdb or not self.dist.is_rank0:  # the other ranks go on meanwhile
            return None
        limit = 0 if final else cfg.solver.test_iter
        results = evaluate_nets(self.nets, self.class_names, cfg.data.test_lmdb, cfg.data,
                                self.device, limit_batches=limit, autocast=self._autocast,
                                should_stop=lambda: self.stop_requested)
        if results is None:  # Ctrl-C during the evaluation
            return None
        results["iteration"] = self.iteration
        self.last_eval = results
        record = {"phase": "test", "iteration": self.iteration, "top1": results["top1"],
                  "top5": results["top5"], "loss": results["loss"], "images": results["images"]}
        self.records.write(record)
        self.history["eval"].append(record)
        self.runlog.info(*eval_log_lines(self.iteration, results))
        return results

    # -------------------------------------------------------------------------- checkpoints
    def checkpoint_payload(self):
        blobs = {name: workspace.FetchTensor(name) for name in self.state_blobs}
        return dict(
            iteration=self.iteration, blobs=blobs, reader=self.reader.state_dict(),
            rng=ckpt.capture_rng(workspace.current(), {"augment": self.aug_generator}),
            config=C.to_dict(self.cfg),
            trainer={"smoothed": self.smoothed.state_dict(), "best": dict(self.best),
                     "history": self.history, "class_names": self.class_names,
                     "test_net": self.nets.test.SerializeToString(),
                     "io": dict({"data": self.nets.data, "label": self.nets.label,
                                 "probs": self.nets.probs, "crop_size": self.cfg.data.crop_size,
                                 "mean": list(self.cfg.data.mean)}, **self.resize_info()),
                     "device": str(self.device)})

    def save(self, path=None):
        self._flush()
        if not self.dist.is_rank0:
            return None
        path = path or ckpt.checkpoint_path(self.snapshot_prefix, self.iteration)
        ckpt.save_checkpoint(path, **self.checkpoint_payload())
        self.runlog.info("Snapshotting to %s" % path)
        self.last_snapshot = (self.iteration, path)
        return path

    def _restore(self, state):
        missing = [b for b in self.state_blobs if b not in state["blobs"]]
        if missing:
            raise TrainingError("checkpoint %s lacks blobs %s that this config's nets need (was it "
                                "made with another model.* config?)" % (state["path"], missing[:5]))
        for name, value in state["blobs"].items():
            current = workspace.FetchTensor(name) if workspace.HasBlob(name) else None
            if isinstance(current, torch.Tensor) and tuple(current.shape) != tuple(value.shape):
                raise TrainingError("checkpoint %s: blob %r has shape %s, this run's net needs %s"
                                    % (state["path"], name, list(value.shape), list(current.shape)))
            if isinstance(value, torch.Tensor):  # back where this run keeps it (the counter: CPU)
                value = value.to(current.device if isinstance(current, torch.Tensor) else self.device)
            workspace.FeedTensor(name, value)
        try:
            self.reader.load_state_dict(state["reader"])
        except ValueError as e:
            raise TrainingError("checkpoint %s: %s (resume with the checkpoint's data.* and "
                                "solver.random_seed)" % (state["path"], e)) from None
        ckpt.restore_rng(state["rng"], workspace.current(), {"augment": self.aug_generator})
        self.iteration = int(state["iteration"])
        trainer = state.get("trainer", {})
        if "smoothed" in trainer:
            self.smoothed_state = trainer["smoothed"]
        self.best = dict(trainer.get("best", self.best))
        self.history = trainer.get("history", self.history)

    # -------------------------------------------------------------------------- the loop
    def run(self):
        """Train to solver.max_iter; returns the result dict (see fine_tune)."""
        cfg = self.cfg
        solver = cfg.solver
        self.smoothed = SmoothedLoss(solver.average_loss)
        self.smoothed_state = None
        self.last_snapshot = (None, None)
        t_start = time.perf_counter()
        try:
            self.setup()
        except BaseException:
            if getattr(self, "reader", None) is not None:
                self.reader.close()
            raise
        if self.smoothed_state:
            self.smoothed.load_state_dict(self.smoothed_state)
        start_iteration = self.iteration
        if not self.dist.is_rank0:  # only rank 0 writes the config, log and metrics
            config_path = None
            self.records, self.runlog = distributed.silent_outputs()
        else:
            config_path = self._write_config()
            if self.resume_from is None:  # a fresh run starts fresh files
                for name in ("metrics.jsonl", "train.log"):
                    if os.path.exists(self.path(name)):
                        os.remove(self.path(name))
            self.records = JsonlWriter(self.path("metrics.jsonl"),
                                       truncate_after=start_iteration if self.resume_from else None)
            self.runlog = RunLog(self.path("train.log"), total=solver.max_iter, initial=start_iteration,
                                 progress=cfg.train.progress, stream=self.stream)
        self._displayed = (start_iteration, 0.0)
        self.diag = self._start_diagnostics()
        interrupted = False
        try:
            self._log_start(config_path)
            if solver.test_initialization and start_iteration == 0:
                self.evaluate()
            with self._sigint_as_flag():
                while self.iteration < solver.max_iter:
                    self.step()
                    loss = self._pending[-1][1]  # float() in the guard: one sync per iteration
                    action = self.diag.after_iteration(self.iteration, loss, workspace.current())
                    if action != "continue":
                        # the diagnostics restored an earlier state (stop: the state the bad
                        # iteration started from); forget what the undone iterations logged
                        self.iteration = self.diag.resume_iteration
                        self._pending = [p for p in self._pending if p[0] <= self.iteration]
                        if action == "stop":
                            self.runlog.info("Stopped by the divergence guard after iteration %d; "
                                             "see %s" % (self.iteration, self.path("diagnostics")))
                            break
                        continue
                    it = self.iteration
                    record = self.diag.stats_record(it, workspace.current())
                    if record:
                        self.records.write(record)
                    self.runlog.advance(1)
                    if solver.display and it % solver.display == 0:
                        self._display()
                    if solver.test_interval and it % solver.test_interval == 0 and it < solver.max_iter:
                        self._test_and_keep_best()
                    if solver.snapshot and it % solver.snapshot == 0 and it < solver.max_iter:
                        self.save()
                    if self.dist.enabled:  # every rank stops after the same iteration
                        self.stop_requested = distributed.any_rank(self.stop_requested, self.dist)
                    if self.stop_requested:
                        interrupted = True
                        break
        except distributed.CollectiveError as e:  # a rank died: this one cannot go on
            raise TrainingError(distributed.failure_message(e, self.last_snapshot[1])) from None
        except KeyboardInterrupt:
            interrupted = True
            if self._in_step:  # a second Ctrl-C inside an update: its blobs are half written
                self.records.close()
                self.runlog.info("Aborted during iteration %d: nothing saved; the last checkpoint "
                                 "is %s" % (self.iteration + 1, self.last_snapshot[1] or "none"))
                self.runlog.close()
                self.reader.close()
                return self._result(interrupted=True, checkpoint=self.last_snapshot[1], seconds=0.0,
                                    start_iteration=start_iteration, config_path=config_path)
        train_seconds = time.perf_counter() - t_start
        try:
            if interrupted:
                path = (self.last_snapshot[1] if self.last_snapshot[0] == self.iteration
                        else self.save())
                self.runlog.info("Interrupted at iteration %d; checkpoint saved to %s" % (self.iteration, path),
                                 "Resume with: python tools/train.py --resume %s" % path)
                return self._result(interrupted=True, checkpoint=path, seconds=train_seconds,
                                    start_iteration=start_iteration, config_path=config_path)
            self._flush()
            from food101.zoo import audit_frozen
            audit = audit_frozen(self.frozen_before)
            if self.frozen_before:
                self.runlog.info(audit.report())
            audit.check()  # a frozen blob that moved is a bug, not a result
            final_eval = self._test_and_keep_best(final=True) if cfg.data.test_lmdb else None
            path = self.last_snapshot[1] if self.last_snapshot[0] == self.iteration else self.save()
            artefacts = self._finish(final_eval)
            return self._result(interrupted=False, checkpoint=path, seconds=train_seconds,
                                start_iteration=start_iteration, config_path=config_path,
                                final_eval=final_eval, frozen_audit=audit.report(), **artefacts)
        finally:
            self.records.close()
            self.runlog.close()
            self.reader.close()

    def _start_diagnostics(self):
        """Start-up checks of the nets and the initial weights (see food101.diagnostics)."""
        from food101.diagnostics import Diagnostics
        cfg = self.cfg
        diag = Diagnostics(cfg.diagnostics, output_dir=self.path(), num_classes=cfg.model.num_classes,
                           max_iter=cfg.solver.max_iter, log_lines=self.runlog.info,
                           write_record=self.records.write)
        # a resumed run has trained weights: only a fresh one is compared with the zoo's values
        diag.on_start([self.nets.fwd_bwd, self.nets.update], self.nets.init, self.nets.params,
                      workspace.current(), zoo_model=None if self.resume_from else self.nets.zoo_model,
                      frozen_blobs=self.nets.frozen_blobs)
        return diag

    def _write_config(self):
        text_header = "Effective config of the run in %s (random_seed resolved)." % os.path.abspath(
            self.path())
        paths = {os.path.join(os.path.dirname(self.snapshot_prefix) or ".", "config.yaml"),
                 self.path("config.yaml")}
        for p in sorted(paths):
            C.dump_config(self.cfg, p, header=text_header)
        return self.path("config.yaml")

    def _log_start(self, config_path):
        cfg = self.cfg
        lines = ["Solving food101 fine-tuning on %s (%s)" % (self.device, "bf16 autocast" if cfg.train.bf16 else "fp32"),
                 "Train LMDB %s: %d records, %d classes; batch %d x iter_size %d" % (
                     cfg.data.train_lmdb, self.reader.num_records, len(self.class_names),
                     cfg.data.batch_size, cfg.solver.iter_size),
                 "Zoo model: %s" % self.nets.zoo_note,
                 "Trained: %d params in %s; frozen: %d zoo blobs" % (
                     len(self.nets.params), _layer_summary(self.nets.params), len(self.nets.frozen_blobs)),
                 "Effective config: %s" % config_path]
        if self.resume_from is not None:
            lines.append("Resuming from %s at iteration %d" % (self.resume_from["path"], self.iteration))
        if self.dist.enabled:
            lines.append(distributed.describe(self.dist, cfg, self.lr_factor))
        from food101.train import schedule
        for w in schedule.check(cfg.solver):
            lines.append("LR schedule warning: " + w)
        self.runlog.info(*lines)

    def _display(self):
        last = self._flush()
        if last is None:
            return
        done = last["iteration"] - self._displayed[0]
        seconds = self.step_seconds - self._displayed[1]
        self._displayed = (last["iteration"], self.step_seconds)
        iters_per_s = done / seconds if seconds > 0 else float("nan")
        images_per_s = iters_per_s * self.cfg.data.batch_size * self.cfg.solver.iter_size
        self.runlog.info(*train_log_lines(last["iteration"], last["smoothed_loss"], last["lr"],
                                          last["loss"], last["accuracy"], iters_per_s, images_per_s))
        self.runlog.advance(0, loss=last["smoothed_loss"], lr=last["lr"])

    def _test_and_keep_best(self, final=False):
        self._flush()
        results = self.evaluate(final=final)
        if results is None:
            return None
        if self.best["top1"] is None or results["top1"] > self.best["top1"]:
            self.best = {"top1": results["top1"], "iteration": self.iteration, "path": self.best_path}
            ckpt.save_checkpoint(self.best_path, **self.checkpoint_payload())
            self.runlog.info("Best test top-1 so far (%.4f at iteration %d): %s"
                             % (results["top1"], self.iteration, self.best_path))
        return results

    def _finish(self, final_eval):
        cfg = self.cfg
        out = {}
        if not self.dist.is_rank0:
            return out
        if final_eval is not None:
            out["eval_path"] = write_results(final_eval, self.path("eval_final.json"))
        if cfg.train.plots:
            from food101.train.plots import plot_run
            out["plots"] = plot_run(self.path(), confusion=final_eval and final_eval["confusion"],
                                    class_names=self.class_names, window=cfg.solver.average_loss)
        if cfg.train.export:
            out["deploy_dir"] = export_deploy(self, self.path("deploy"))
            self.runlog.info("Exported the Caffe2 deploy model to %s" % out["deploy_dir"])
        return out

    def _result(self, **kw):
        final_eval = kw.pop("final_eval", None)
        records = [r for r in self._read_records() if r.get("phase") == "train"]
        start = kw.pop("start_iteration")
        seconds = kw.pop("seconds")
        done = self.iteration - start
        result = dict(kw, iteration=self.iteration, rank=self.dist.rank,
                      output_dir=os.path.abspath(self.path()),
                      metrics_path=self.path("metrics.jsonl"), log_path=self.path("train.log"),
                      best=self.best, final_loss=records[-1]["smoothed_loss"] if records else None,
                      iterations_run=done, seconds=seconds,
                      train_seconds=self.step_seconds,
                      iters_per_s=done / self.step_seconds if self.step_seconds and done else None,
                      images_per_s=(done * self.cfg.data.batch_size * self.cfg.solver.iter_size
                                    / self.step_seconds) if self.step_seconds and done else None,
                      top1=final_eval["top1"] if final_eval else None,
                      top5=final_eval["top5"] if final_eval else None)
        return result

    def _read_records(self):
        from food101.train.metrics import read_jsonl
        return read_jsonl(self.path("metrics.jsonl")) if os.path.exists(self.path("metrics.jsonl")) else []

    @contextlib.contextmanager
    def _sigint_as_flag(self):
        """First Ctrl-C: finish this iteration, checkpoint, stop. Second: KeyboardInterrupt."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            self.runlog.info("Ctrl-C: stopping after iteration %d to write a checkpoint "
                             "(press again to abort at once)" % (self.iteration + 1))

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def _layer_summary(params):
    """"conv1 .. fire9 (26 layers)" style text for a long param list."""
    layers = list(dict.fromkeys(p.rsplit("_", 1)[0].split("/")[0] for p in params))
    if len(layers) <= 4:
        return ", ".join(layers)
    return "%s, %s .. %s, %s (%d layers)" % (layers[0], layers[1], layers[-2], layers[-1], len(layers))


# ------------------------------------------------------------------------------ shared pieces
def evaluate_nets(nets, class_names, lmdb_path, data_cfg, device, limit_batches=0, autocast=None,
                  should_stop=None):
    """Run the test net over an LMDB (centre crops, in order): the evaluation dict, or None when
    `should_stop()` turned true on the way."""
    from food101.data.augment import Augment
    from food101.data.reader import LMDBReader
    metrics = ClassificationMetrics(len(class_names))
    center = Augment(data_cfg.crop_size, train=False, mean=data_cfg.mean, device=device)
    with LMDBReader(lmdb_path, data_cfg.test_batch_size, shuffle=False, num_threads=1,
                    pin_memory=device.type == "cuda") as reader:
        created = False
        for k, (images, labels) in enumerate(reader):
            if limit_batches and k >= limit_batches:
                break
            if should_stop is not None and should_stop():
                return None
            workspace.FeedTensor(nets.data, center(images))
            if not created:
                workspace.CreateNet(nets.test, overwrite=True)
                created = True
            with (autocast() if autocast else contextlib.nullcontext()):
                workspace.RunNet(nets.test.name)
            metrics.add(workspace.FetchTensor(nets.probs), labels)
    return metrics.results(class_names)


# ------------------------------------------------------------------------------ building
def load_zoo_model(model_cfg):
    """The zoo SqueezeNet: model.zoo_dir, else the downloaded one, else the seeded stand-in."""
    from food101 import zoo
    if model_cfg.zoo_dir:
        if not os.path.isdir(model_cfg.zoo_dir):
            raise TrainingError("model.zoo_dir: %s is not a folder (expected the zoo's "
                                "predict_net.pb and init_net.pb)" % model_cfg.zoo_dir)
        return zoo.load(model_cfg.zoo_dir), "%s" % model_cfg.zoo_dir
    location = zoo.locate_squeezenet()
    return location.load(), location.note


def build_training_nets(cfg, class_names, device_option):
    """Train (forward+backward, update) and test nets of the fine-tuning run, on the device."""
    from food101 import zoo
    from food101.caffe2 import optimizer
    model_cfg, solver = cfg.model, cfg.solver
    zoo_model, zoo_note = load_zoo_model(model_cfg)
    food = zoo.replace_classifier(zoo_model, model_cfg.num_classes, class_names=list(class_names),
                                  weight_init=model_cfg.weight_init)
    choice = dict(freeze_up_to=model_cfg.freeze_up_to or None,
                  unfreeze_from=model_cfg.unfreeze_from or None)
    optimizer.reset_optimizer_instance_count()  # stable blob names: checkpoints resume anywhere
    with core.DeviceScope(device_option):
        train = zoo.build_finetune_model(food, input_kind="float", train_dropout=model_cfg.train_dropout,
                                         class_names=list(class_names), **choice)
        info = train.finetune
        for p in info.new_params:
            info.lr_mult[p] = model_cfg.new_lr_mult
        for p in info.zoo_params:
            info.lr_mult[p] = model_cfg.backbone_lr_mult
        policy_args = C.lr_policy_args(solver)
        zoo.build_finetune_sgd(train, solver.base_lr, weight_decay=solver.weight_decay or None,
                               policy=solver.lr_policy, momentum=solver.momentum,
                               nesterov=int(solver.nesterov), **policy_args)
        test = zoo.build_finetune_model(food, is_test=True, param_model=train, input_kind="float",
                                        class_names=list(class_names), with_loss=False, **choice)
    for net in (train.param_init_net, train.net, test.net):
        net.Proto().device_option.CopyFrom(device_option)
    fwd_bwd, update = split_at_gradient(train.net.Proto(), train.net.Proto().name)
    lr_blob, lr_scale = _base_lr_blob(update, solver.base_lr)
    return TrainingNets(
        fwd_bwd=fwd_bwd, update=update, test=test.net.Proto(), init=[train.param_init_net.Proto()],
        data=info.input_blob, label=info.label_blob, loss=info.loss_blob,
        accuracy=info.accuracy_blob, probs=test.finetune.output_blob,
        params=[str(p) for p in train.GetParams()], lr_blob=lr_blob, lr_scale=lr_scale,
        class_names=list(class_names), deploy=train, zoo_note=zoo_note,
        frozen_blobs=list(info.frozen_blobs), zoo_model=zoo_model)


def _base_lr_blob(update, base_lr):
    """The LearningRate output whose base_lr is solver.base_lr (others carry lr multipliers),
    and the factor that turns any of them into the base rate when no param uses the base."""
    candidates = []
    for op in update.op:
        if op.type == "LearningRate":
            args = ArgsToDict(op.arg)
            candidates.append((abs(abs(args["base_lr"]) - base_lr), op.output[0], abs(args["base_lr"])))
    if not candidates:
        raise TrainingError("the update net has no LearningRate op (no trainable params?)")
    _, blob, op_base = min(candidates)
    return blob, (1.0 if abs(op_base - base_lr) <= 1e-7 * base_lr else base_lr / op_base)


def export_deploy(trainer, dest):
    """The trained model as a Caffe2 deploy folder (food101.interop.export.to_caffe2), plus how images
    were resized for it (preprocess.json gains resize_size / resize, which predict uses)."""
    from food101.interop.export import to_caffe2
    cfg = trainer.cfg
    to_caffe2(trainer.nets.deploy, dest, class_names=trainer.class_names,
              mean_bgr=tuple(cfg.data.mean), crop=cfg.data.crop_size)
    path = os.path.join(dest, "preprocess.json")
    with open(path, encoding="utf-8") as f:
        info = json.load(f)
    info.update(trainer.resize_info())
    C.atomic_write_text(path, json.dumps(info, indent=1) + "\n")
    return dest


def fine_tune(config=None, resume=None, overrides=None, stream=None):
    """Fine-tune the zoo SqueezeNet as `config` says; the notebook's and tools/train.py's entry.

    config: a Config, a YAML path, a dict, or None (defaults; with `resume`, the checkpoint's
    own config). overrides: {"solver.max_iter": 100, ...} or ["solver.max_iter=100", ...],
    applied last. resume: a checkpoint file or a folder of them.

    Returns a dict: interrupted, iteration, checkpoint (path), best {top1, iteration, path},
    top1/top5 (final evaluation), output_dir, metrics_path, log_path, eval_path, plots {name:
    path}, deploy_dir, final_loss (smoothed), iterations_run, seconds, iters_per_s."""
    if isinstance(config, C.Config):
        cfg = config
    elif isinstance(config, dict):
        cfg = C.from_dict(config, "config dict")
    elif config is not None:
        cfg = C.load_config(os.fspath(config))
    elif resume is not None:
        cfg = C.from_dict(ckpt.load_checkpoint(resume)["config"], "checkpoint config")
    else:
        cfg = C.default_config()
    if overrides:
        if not isinstance(overrides, dict):
            overrides = C.parse_overrides(overrides)
        cfg = C.merge(cfg, overrides, "overrides")
    C.validate(cfg)
    with own_workspace():
        return Trainer(cfg, resume=resume, stream=stream).run()
