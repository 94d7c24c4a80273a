"""The training engine: setup, the loop, one step; what happens around them is in hooks.py.

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

The nets come from nets.py. Each `step()` is one weight update and gives a `StepResult`; after
it the diagnostics decide an `Action` (CONTINUE, or SKIP / ROLLBACK / STOP with an earlier state
back in the workspace). The hooks (hooks.py) own the rest, one concern each: RunLogging,
RunDiagnostics, Evaluation, Checkpoints, Distributed.

Iteration i (1-based) is the i-th weight update; its LearningRate op sees ITER = i, exactly as
Caffe2's build_sgd sets it up, or i - 1 in a Caffe solver run (solver.lr_numbering "caffe": the
counter is incremented after LearningRate reads it, as Caffe's SGDSolver reads iter_ first). Evaluation every `test_interval`, checkpoints every `snapshot`
(after the evaluation of the same iteration, so they carry its best accuracy) and at the end.
Resuming restores blobs, reader position, every RNG and the diagnostics' state (the divergence
guard's lr cut, its quarantine), so 2N iterations equal N + resume + N.

Ctrl-C: the first SIGINT sets a flag; the loop stops at the end of the current iteration, writes
a checkpoint and `fine_tune` returns with `interrupted=True` (tools/train.py exits 130). A
second Ctrl-C interrupts at once.
"""
import collections
import contextlib
import glob
import os
import random
import shutil
import signal
import threading
import time

import numpy as np
import torch

from food101.caffe2 import core, workspace
from food101.caffe2.compiled import CompileOptions
from food101.caffe2.proto import caffe2_pb2
from food101.caffe2.utils import external_reads
from food101.data import lmdb_file
from food101.data.augment import Augment, check_mean_image, crop_size_of
from food101.data.reader import LMDBReader
from food101.data.writer import read_metadata as read_lmdb_metadata
from food101.data.resident import DeviceResidentDataset
from food101.diagnostics import WARNING, Action, Finding
from food101.inference.evaluate import write_results
from food101.interop.backbone import backbone_name
from food101.interop.caffe import netfile
from food101.interop.deploy import ModelMetadata, write_deploy
from food101 import checkpoint as ckpt
from food101.train import caffe_setup
from food101.train import config as C
from food101.train import distributed
from food101.train.hooks import (Checkpoints, Distributed, Evaluation, RunDiagnostics, RunLogging,
                                 StepResult)
from food101.train.nets import TrainingError, add_accumulation, build_training_nets
from food101.train.plots import plot_run
from food101.zoo import audit_frozen, frozen_checksums
from food101.zoo.surgery import food101_classes

WORKSPACE = "food101_train"


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


# ------------------------------------------------------------------------------ the engine
class Trainer:
    """One training run. `Trainer(cfg).run()`; `resume=` a checkpoint path or folder."""

    def __init__(self, cfg, resume=None, stream=None):
        self.resume_from = ckpt.load_checkpoint(resume) if resume else None
        if self.resume_from is not None:
            cfg = C.resumed_config(self.resume_from.get("config"), cfg)
        if cfg.model.num_classes == 0:  # the default: as many outputs as the LMDB has classes
            cfg = C.merge(cfg, {"model.num_classes": len(dataset_classes(cfg))},
                          "the train LMDB's classes")
        cfg = C.resolve_snapshot_prefix(cfg, model_name(cfg.model))
        self.cfg = C.validate(C.resolve_seed(cfg))
        self.cfg, self.dist = distributed.join(self.cfg, error=TrainingError)  # torchrun ranks
        self.device, self.device_option = select_device(self.cfg.solver)
        self.iteration = 0
        self.stop_requested = False
        self.stopped_by_guard = None    # the divergence report's path when the guard stopped the run
        self.step_seconds = 0.0
        self.lr_factor = 1.0            # the distributed lr scaling rule's factor
        self.last_step = None           # the StepResult of the last update
        # set up by setup(): the data, the nets and what the loop keeps between iterations
        self.reader = self.augment = self.aug_generator = self.nets = None
        self.input_mean = None          # data.mean, or data.mean_file's C x H x W mean image
        self.class_names, self.state_blobs, self.accumulators = [], [], {}
        self.frozen_before = {}
        self.trained_before = {}        # checksums of the trained params when the run starts
        self._start_iteration = 0
        self._created_dirs = []         # folders this run created (removed again on an early Ctrl-C)
        self._in_step = False
        self._in_flight = collections.deque()
        # the hooks, one concern each
        self.logging = RunLogging(self.cfg, self.cfg.train.output_dir, stream)
        self.checkpoints = Checkpoints(self.cfg, self.dist)
        self.evaluation = Evaluation(self.cfg, self.dist)
        self.distributed = Distributed(self.dist)
        self.diagnostics = None         # created once the outputs are open (it logs to them)
        self.diagnostics_state = {}     # a resumed checkpoint's diagnostics state, for them

    def path(self, *parts):
        return os.path.join(self.cfg.train.output_dir, *parts)

    # -------------------------------------------------------------------------- setup
    def setup(self):
        """Data, nets, workspace; a resumed run's state. Returns the checkpoint's smoothed-loss
        state (None for a fresh run)."""
        cfg = self.cfg
        data = cfg.data
        for key in ("train_lmdb",) + (("test_lmdb",) if data.test_lmdb else ()):
            path = getattr(data, key)
            if not path:
                raise TrainingError("data.%s is not set: build one with tools/build_lmdb.py and "
                                    "pass --train-lmdb/--set data.%s=PATH" % (key, key))
            if not os.path.exists(path):
                raise TrainingError("data.%s: %s does not exist%s" % (key, path,
                                                                     _missing_source_hint(cfg, path)))
            lmdb_file.validate(path)  # a damaged file fails here, before anything is written
        self._claim_output_dir()
        seed = cfg.solver.random_seed
        seed_everything(seed)
        pin = self.device.type == "cuda"
        self.reader = LMDBReader(data.train_lmdb, data.batch_size, shuffle=data.shuffle, seed=seed,
                                 pin_memory=pin, num_threads=1, prefetch=4,
                                 **distributed.reader_shard(self.dist))
        if data.device_resident:
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
            raise TrainingError("data.crop_size %d%s is larger than the %dx%d images of %s "
                                "(--set data.crop_size=N with N <= %d, or 0 for the whole image)" % (
                                    data.crop_size, _crop_origin(cfg), h, w, data.train_lmdb,
                                    min(h, w)))
        self.input_mean = input_mean(data, self.reader.image_shape)
        snapshots = os.path.dirname(C.snapshot_prefix(self.cfg)) or "."
        self._created_dirs = [d for d in (self.path(), snapshots) if not os.path.isdir(d)]
        os.makedirs(self.path(), exist_ok=True)  # only once the data is known to be usable
        self.aug_generator = torch.Generator().manual_seed(seed + 1)
        self.augment = Augment(data.crop_size, train=True, mirror=data.mirror, mean=self.input_mean,
                               device=self.device, generator=self.aug_generator)
        self.nets = build_training_nets(cfg, self.class_names, self.device_option,
                                        tuple(self.reader.image_shape))
        self.logging.outputs = self.nets.outputs
        self.lr_factor = distributed.prepare_training_nets(self.nets, cfg, self.dist)
        for net in self.nets.init:
            workspace.RunNetOnce(net)
        self.frozen_before = frozen_checksums(self.nets.frozen_blobs)  # the zoo's own values
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
        if self.resume_from is None:
            return None
        state = distributed.localize_checkpoint(self.resume_from, self.reader, self.dist,
                                                error=TrainingError)
        smoothed_state, self.evaluation.history = self.checkpoints.restore(self, state)
        return smoothed_state

    def _no_progress_findings(self):
        """Findings for a run that trained nothing in the end: its last update had lr 0 (it
        changed no weight), or no trained parameter differs from its value at the start."""
        found = []
        if self.last_step is None:
            return found
        solver = self.cfg.solver
        if float(self.last_step.lr.reshape(-1)[0]) == 0.0 and solver.base_lr > 0:
            hint = (" lr_policy poly reaches 0 at max_iter with Caffe2's numbering (update i uses "
                    "the rate at i); Caffe's numbering (--set solver.lr_numbering=caffe, what a "
                    "solver.prototxt sets) uses the rate at i - 1, which is not 0."
                    if solver.lr_policy == "poly" and solver.lr_numbering == "caffe2" else "")
            found.append(Finding("last_update_lr_zero", WARNING,
                                 "the last update (iteration %d) had learning rate 0, so it "
                                 "changed no weight.%s" % (self.last_step.iteration, hint),
                                 iteration=self.last_step.iteration))
        if self.trained_before and not audit_frozen(self.trained_before).changed:
            found.append(Finding("no_param_changed", WARNING,
                                 "no trained parameter changed in this run (%d params, iterations "
                                 "%d..%d): every update had learning rate 0 or zero gradients; "
                                 "the weights saved are the ones it started from"
                                 % (len(self.trained_before), self._start_iteration + 1,
                                    self.iteration), iteration=self.iteration))
        return found

    def _class_names(self, reader):
        return dataset_classes(self.cfg, reader.classes)

    RUN_FILES = ("metrics.jsonl", "train.log", "config.yaml", "eval_final.json")
    RUN_FOLDERS = ("deploy", "plots")

    def _claim_output_dir(self):
        """A fresh run never mixes with an earlier one in the same folder: refused unless
        train.overwrite, which removes what a run writes there (and nothing else)."""
        if self.resume_from is not None or not self.dist.is_rank0:
            return
        snapshots = os.path.dirname(C.snapshot_prefix(self.cfg)) or "."
        used = [n for n in self.RUN_FILES if os.path.isfile(self.path(n))]
        used += [n + "/" for n in self.RUN_FOLDERS if os.path.isdir(self.path(n))]
        old_checkpoints = sorted(glob.glob(os.path.join(snapshots, "*" + ckpt.SUFFIX)))
        used += [os.path.relpath(p, self.path()) for p in old_checkpoints[:3]]
        if not used:
            return
        if not self.cfg.train.overwrite:
            raise TrainingError(
                "train.output_dir %s already holds a run (%s%s): pass --overwrite (--set "
                "train.overwrite=true) to clear it, --resume %s to continue it, or another "
                "--output-dir" % (self.path(), ", ".join(used[:6]), " ..." if len(used) > 6 else "",
                                  self.path()))
        for name in self.RUN_FILES:
            if os.path.isfile(self.path(name)):
                os.remove(self.path(name))
        report_dir = self.cfg.diagnostics.report_dir
        for name in self.RUN_FOLDERS + ((report_dir,) if report_dir and not os.path.isabs(report_dir)
                                        else ()):
            if os.path.isdir(self.path(name)):
                shutil.rmtree(self.path(name))
        for path in old_checkpoints + glob.glob(os.path.join(snapshots, "config.yaml")):
            os.remove(path)

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
        channels, h, w = self.reader.image_shape
        return (torch.zeros((n, channels) + crop_size_of(crop, h, w), device=self.device),
                torch.zeros(n, dtype=torch.int32, device=self.device))

    def _feed_batch(self, x, y):
        workspace.FeedTensor(self.nets.data, x)
        workspace.FeedTensor(self.nets.label, y)

    # -------------------------------------------------------------------------- one iteration
    def autocast(self):
        """bf16 autocast around the forward/backward net (compiled nets do it themselves)."""
        if not self.cfg.train.bf16 or self.cfg.train.compile:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _compile_options(self):
        if not self.cfg.train.compile:
            return None
        return CompileOptions(autocast="bfloat16" if self.cfg.train.bf16 else None)

    def step(self):
        """One weight update: iter_size forward/backward passes, then the update net."""
        t0 = time.perf_counter()
        self._in_step = True
        distributed.decorrelate_rngs(self.cfg.solver.random_seed, self.iteration, self.dist,
                                     workspace.current(), [self.aug_generator])
        losses, accs, outs = [], [], []
        shown = [b for b, _ in self.nets.outputs]  # a Caffe net's own outputs (else none)
        for k in range(self.cfg.solver.iter_size):
            x, y = self._next_train_batch()
            while k == 0 and self.diagnostics.batch_is_quarantined(
                    self.iteration + 1, x, y, getattr(self.reader, "last_keys", None)):
                x, y = self._next_train_batch()
            self._feed_batch(x, y)
            with self.autocast():
                workspace.RunNet(self.nets.fwd_bwd.name)
            losses.append(workspace.FetchTensor(self.nets.loss).detach().float().reshape(()))
            accs.append(workspace.FetchTensor(self.nets.accuracy).detach().float().reshape(()))
            if shown:
                outs.append(torch.stack([workspace.FetchTensor(b).detach().float().reshape(())
                                         for b in shown]))
        workspace.RunNet(self.nets.update.name)
        self.iteration += 1
        self._in_step = False
        seconds = time.perf_counter() - t0
        self.step_seconds += seconds
        self.last_step = StepResult(
            iteration=self.iteration,
            loss=losses[0] if len(losses) == 1 else torch.stack(losses).mean(),
            accuracy=accs[0] if len(accs) == 1 else torch.stack(accs).mean(),
            lr=workspace.FetchTensor(self.nets.lr_blob).detach().reshape(-1)[0],
            outputs=None if not outs else outs[0] if len(outs) == 1 else torch.stack(outs).mean(0),
            images=self.cfg.data.batch_size * self.cfg.solver.iter_size * self.dist.world_size,
            seconds=seconds)
        self.logging.add(self.last_step)
        return self.last_step

    # -------------------------------------------------------------------------- the loop
    def run(self):
        """Train to solver.max_iter; returns the result dict (see fine_tune)."""
        t_start = time.perf_counter()
        resumed = self.resume_from is not None
        try:
            smoothed_state = self.setup()
            start_iteration = self._start_iteration = self.iteration
            self.trained_before = frozen_checksums(self.nets.params)
            config_path = self.logging.open(start_iteration, resumed, self.dist.is_rank0,
                                            smoothed_state)
            self.diagnostics = RunDiagnostics(self.cfg, self.path(), self.logging)
            self.diagnostics.start(self.nets, resumed)
            if resumed:
                self.diagnostics.load_state_dict(self.diagnostics_state, self.nets)
        except KeyboardInterrupt:  # Ctrl-C before the first update: nothing to save
            self._abandon_start()
            return self._result(interrupted=True, checkpoint=None, seconds=0.0,
                                start_iteration=self.iteration, config_path=None)
        except BaseException:
            if self.reader is not None:
                self.reader.close()
            self._remove_empty_created_dirs()  # a model that fails to load leaves no empty folder
            raise
        summary = dict(start_iteration=start_iteration, config_path=config_path)
        try:
            interrupted = self._loop(config_path, start_iteration)
        except distributed.CollectiveError as e:  # a rank died: this one cannot go on
            raise self.distributed.failure(e, self.checkpoints.last[1]) from None
        except KeyboardInterrupt:
            interrupted = True
            if self._in_step:  # a second Ctrl-C inside an update: its blobs are half written
                self.logging.records.close()
                self.logging.info("Aborted during iteration %d: nothing saved; the last "
                                  "checkpoint is %s" % (self.iteration + 1,
                                                        self.checkpoints.last[1] or "none"))
                self.logging.close()
                self.reader.close()
                return self._result(interrupted=True, checkpoint=self.checkpoints.last[1],
                                    seconds=0.0, **summary)
        train_seconds = time.perf_counter() - t_start
        try:
            if interrupted:
                path = self.checkpoints.saved_at(self.iteration) or self.save()
                self.logging.info("Interrupted at iteration %d; checkpoint saved to %s"
                                  % (self.iteration, path),
                                  "Resume with: python tools/train.py --resume %s" % path)
                return self._result(interrupted=True, checkpoint=path, seconds=train_seconds,
                                    **summary)
            self.logging.flush(self.nets.lr_scale)
            audit = audit_frozen(self.frozen_before)
            if self.frozen_before:
                self.logging.info(audit.report())
            audit.check()  # a frozen blob that moved is a bug, not a result
            warnings = self._no_progress_findings() if self.iteration > start_iteration else []
            self.diagnostics.diag.add_findings(warnings)
            final_eval = self._test_and_keep_best(final=True) if self.cfg.data.test_lmdb else None
            path = self.checkpoints.saved_at(self.iteration) or self.save()
            artefacts = self._artefacts(final_eval)
            return self._result(interrupted=False, checkpoint=path, seconds=train_seconds,
                                final_eval=final_eval, frozen_audit=audit.report(), **summary,
                                warnings=[str(f) for f in warnings], **artefacts)
        finally:
            self.logging.close()
            self.reader.close()

    def _abandon_start(self):
        """After a Ctrl-C during setup: close what is open and, for a fresh run, remove what it
        wrote (its config, log and metrics files, the output folder it created), so no half
        run is left behind. A resumed run keeps its folder: its checkpoints are still good."""
        self.logging.close()
        if self.reader is not None:
            self.reader.close()
        if self.resume_from is not None or not self.dist.is_rank0:
            return
        snapshots = os.path.dirname(C.snapshot_prefix(self.cfg)) or "."
        for path in [self.path(n) for n in self.RUN_FILES] + [os.path.join(snapshots, "config.yaml")]:
            if os.path.isfile(path):
                os.remove(path)
        self._remove_empty_created_dirs()

    def _remove_empty_created_dirs(self):
        for folder in reversed(self._created_dirs):  # the snapshots folder before the run's
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)

    def _loop(self, config_path, start_iteration):
        """Iterations up to solver.max_iter; True when Ctrl-C stopped them."""
        solver = self.cfg.solver
        self.logging.start_lines(self, config_path)
        if solver.test_initialization and start_iteration == 0:
            self.evaluation.run(self)
        with self._sigint_as_flag():
            while self.iteration < solver.max_iter:
                self.step()
                action = self.diagnostics.after_iteration(self.iteration, self.last_step.loss)
                if action != Action.CONTINUE:
                    # the diagnostics restored an earlier state (STOP: the state the bad
                    # iteration started from); forget what the undone iterations logged
                    self.iteration = self.diagnostics.resume_iteration
                    self.logging.forget_after(self.iteration)
                    if action == Action.STOP:
                        reports = self.diagnostics.diag.reports
                        where = (reports[-1].report_path if reports else None) or self.path("diagnostics")
                        self.stopped_by_guard = where
                        self.logging.info("Stopped by the divergence guard after iteration %d; "
                                          "see %s" % (self.iteration, where))
                        return False
                    continue
                it = self.iteration
                self.diagnostics.record_statistics(it)
                self.logging.advance(1)
                if solver.display and it % solver.display == 0:
                    self.logging.display(self.nets.lr_scale, self.step_seconds)
                if solver.test_interval and it % solver.test_interval == 0 and it < solver.max_iter:
                    self._test_and_keep_best()
                if solver.snapshot and it % solver.snapshot == 0 and it < solver.max_iter:
                    self.save()
                self.stop_requested = self.distributed.agree_to_stop(self.stop_requested)
                if self.stop_requested:
                    return True
        return False

    # -------------------------------------------------------------------------- hook glue
    def _payload(self):
        return self.checkpoints.payload(self, self.logging.smoothed.state_dict(),
                                        self.evaluation.history)

    def save(self, path=None):
        """A checkpoint of the current iteration (rank 0; the others return None)."""
        self.logging.flush(self.nets.lr_scale)
        if not self.dist.is_rank0:
            return None
        return self.checkpoints.save(self, self._payload(), path)

    def _test_and_keep_best(self, final=False):
        self.logging.flush(self.nets.lr_scale)
        results = self.evaluation.run(self, final=final)
        if results is not None:
            self.checkpoints.keep_best(self, results, self._payload)
        return results

    def _artefacts(self, final_eval):
        """eval_final.json, the plots and the deploy folder (rank 0)."""
        cfg = self.cfg
        out = {}
        if not self.dist.is_rank0:
            return out
        if final_eval is not None:
            out["eval_path"] = write_results(final_eval, self.path("eval_final.json"))
        if cfg.train.plots:
            out["plots"] = plot_run(self.path(), confusion=final_eval and final_eval["confusion"],
                                    class_names=self.class_names, window=cfg.solver.average_loss)
        if cfg.train.export:
            out["deploy_dir"] = export_deploy(self, self.path("deploy"))
            self.logging.info("Exported the Caffe2 deploy model to %s" % out["deploy_dir"])
        return out

    def _result(self, **kw):
        final_eval = kw.pop("final_eval", None)
        records = self.logging.train_records()
        start = kw.pop("start_iteration")
        seconds = kw.pop("seconds")
        done = self.iteration - start
        reports = self.diagnostics.diag.reports if self.diagnostics is not None else []
        result = dict(kw, iteration=self.iteration, rank=self.dist.rank,
                      stopped_by_guard=self.stopped_by_guard,
                      divergence_reports=[r.report_path for r in reports if r.report_path],
                      output_dir=os.path.abspath(self.path()),
                      metrics_path=self.path("metrics.jsonl"), log_path=self.path("train.log"),
                      best=self.checkpoints.best,
                      final_loss=records[-1]["smoothed_loss"] if records else None,
                      iterations_run=done, seconds=seconds,
                      train_seconds=self.step_seconds,
                      iters_per_s=done / self.step_seconds if self.step_seconds and done else None,
                      images_per_s=(done * self.cfg.data.batch_size * self.cfg.solver.iter_size
                                    / self.step_seconds) if self.step_seconds and done else None,
                      top1=final_eval["top1"] if final_eval else None,
                      top5=final_eval["top5"] if final_eval else None)
        return result

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
            # between updates nothing more runs: the checkpoint holds the iteration just done
            last = self.iteration + 1 if self._in_step else self.iteration
            self.logging.info("Ctrl-C: stopping after iteration %d to write a checkpoint "
                              "(press again to abort at once)" % last)

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def model_name(model_cfg):
    """The short name of the model a run trains (snapshot file names): the Caffe net's, the
    zoo_dir model's, else the Model Zoo SqueezeNet's."""
    path = model_cfg.caffe_net or (model_cfg.zoo_dir if not model_cfg.zoo_dir.endswith(
        ".caffemodel") else "")
    return backbone_name(path) if path and os.path.exists(path) else "squeezenet"


def input_mean(data, image_shape):
    """What the run subtracts: data.mean, or data.mean_file's mean image (Caffe's mean_file),
    which must have the C x H x W of the train records and of the test records."""
    if not data.mean_file:
        channels = image_shape[0]
        if len(data.mean) not in (1, channels):
            raise TrainingError("data.mean has %d values %s but the records of %s have %d "
                                "channel(s): give one value per channel or one for all (--set "
                                "'data.mean=[0]' subtracts nothing)" % (
                                    len(data.mean), list(data.mean), data.train_lmdb, channels))
        return tuple(data.mean)
    try:
        mean = netfile.read_mean_file(data.mean_file)
    except (OSError, ValueError) as e:  # CaffeFormatError is a ValueError
        raise TrainingError("data.mean_file %s: %s" % (data.mean_file, e)) from None
    shapes = [(data.train_lmdb, tuple(image_shape))]
    if data.test_lmdb:
        with LMDBReader(data.test_lmdb, 1, shuffle=False, num_threads=0) as reader:
            shapes.append((data.test_lmdb, tuple(reader.image_shape)))
    for lmdb, shape in shapes:
        try:
            check_mean_image(mean, shape, "data.mean_file %s" % data.mean_file,
                             "the records of %s" % lmdb)
        except ValueError as e:
            raise TrainingError(str(e)) from None
    return mean


def _crop_origin(cfg):
    """' (from NET's transform_param)' etc.: where data.crop_size came from, for errors."""
    if cfg.model.caffe_net and C.caffe_data_updates(cfg.model.caffe_net).get(
            "data.crop_size") == cfg.data.crop_size:
        return " (the crop_size of %s's TRAIN Data layer)" % cfg.model.caffe_net
    if cfg.data.crop_size == C.default_config().data.crop_size:
        return " (the default: the zoo SqueezeNet's input)"
    return ""


def _missing_source_hint(cfg, path):
    """Why a missing LMDB was looked for where it was: the Caffe layer that names it, else how
    to make one."""
    found = C.caffe_source_places(cfg.model.caffe_net, path) if cfg.model.caffe_net else None
    if not found:
        return " (tools/build_lmdb.py writes it)"
    layer, field, places = found
    return (" (the %s of layer %r in %s; looked in %s; pass --train-lmdb/--test-lmdb or fix the "
            "path)" % (field, layer, cfg.model.caffe_net, " and ".join(places)))


def dataset_classes(cfg, reader_classes=None):
    """The class names of the run: data.classes_file, else the train LMDB's builder metadata,
    else, for a Caffe net (its LMDBs carry no class names), class_0.. as many as its classifier's
    num_output, else Food-101's 101."""
    if cfg.data.classes_file:
        try:
            with open(cfg.data.classes_file, encoding="utf-8") as f:
                return [line.strip() for line in f if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise TrainingError("data.classes_file %s: cannot read it (%s)"
                                % (cfg.data.classes_file, e)) from None
    if reader_classes is None and cfg.data.train_lmdb and os.path.isdir(cfg.data.train_lmdb):
        reader_classes = (read_lmdb_metadata(cfg.data.train_lmdb) or {}).get("classes")
    if reader_classes:
        return list(reader_classes)
    if cfg.model.caffe_net:
        count = caffe_setup.net_num_classes(cfg.model.caffe_net)
        if count:
            return ["class_%d" % i for i in range(count)]
    return food101_classes()


def export_deploy(trainer, dest):
    """The trained model as a Caffe2 deploy folder (food101.interop.deploy), with the metadata
    of this run: class names, mean, crop, and how the images were resized (for predict)."""
    cfg = trainer.cfg
    image = trainer.input_mean if cfg.data.mean_file else None  # Caffe's mean_file travels along
    metadata = ModelMetadata(mean_bgr=tuple(cfg.data.mean) if image is None else None,
                             mean_image=image, crop=cfg.data.crop_size,
                             class_names=tuple(trainer.class_names), **trainer.resize_info())
    write_deploy(trainer.nets.train_model, dest, metadata=metadata)
    return dest


def fine_tune(config=None, resume=None, overrides=None, stream=None):
    """Fine-tune the zoo SqueezeNet as `config` says; the notebook's and tools/train.py's entry.

    config: a Config, a YAML path, a dict, or None (defaults; with `resume`, the checkpoint's
    own config). overrides: {"solver.max_iter": 100, ...} or ["solver.max_iter=100", ...],
    applied last. resume: a checkpoint file or a folder of them.

    Returns a dict: interrupted, iteration, checkpoint (path), best {top1, iteration, path},
    top1/top5 (final evaluation), output_dir, metrics_path, log_path, eval_path, plots {name:
    path}, deploy_dir, final_loss (smoothed), iterations_run, seconds, iters_per_s, warnings
    (a finished run that changed no weight, or whose last update had lr 0)."""
    if isinstance(config, C.Config):
        cfg = config
    elif isinstance(config, dict):
        cfg = C.from_dict(config, "config dict")
    elif config is not None:
        cfg = C.load_config(os.fspath(config))
    elif resume is not None:
        state = ckpt.load_checkpoint(resume)
        cfg = C.resumed_config(state["config"], checkpoint_path=state["path"])
    else:
        cfg = C.default_config()
    if overrides:
        if not isinstance(overrides, dict):
            overrides = C.parse_overrides(overrides)
        cfg = C.merge(cfg, overrides, "overrides")
    C.validate(cfg)
    with own_workspace():
        return Trainer(cfg, resume=resume, stream=stream).run()
