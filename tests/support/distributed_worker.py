"""One rank of the distributed tests: tests/test_distributed.py starts two of these on 127.0.0.1
(Gloo), with torchrun's environment variables; imported, it gives the single-process reference.

    python tests/support/distributed_worker.py job    --out DIR [--steps K]
        K updates of each model below (every rank saves its state), then a fresh dpm run of
        K + 1 updates with a checkpoint per update on rank 0, in which rank 1 exits after update 2
    python tests/support/distributed_worker.py resume --out DIR --checkpoint FILE --steps K

Models (all built with the Caffe2 API):
    dpm      data_parallel_model.Parallelize_CPU: conv + relu + fc + softmax + AveragedLoss,
             loss scaled by 1 / world size, momentum SGD with a step policy
    trainer  the same net as a plain ModelHelper with weight decay, made data-parallel the way
             food101.train does it (insert_gradient_allreduce with average=1, param broadcast)
    bn       conv + SpatialBN + fc, trainer-style, BN running statistics averaged over ranks
"""
import argparse
import os
import sys

import numpy as np

# run as a script by torchrun: the repository root must be importable
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

GLOBAL_BATCH = 8
CLASSES = 5
KILL_AFTER = 2


def batch(step):
    """The global batch of update `step` (1-based); rank r of W trains on its slice."""
    rng = np.random.default_rng(1000 + step)
    x = rng.standard_normal((GLOBAL_BATCH, 3, 6, 6)).astype(np.float32)
    y = rng.integers(0, CLASSES, GLOBAL_BATCH).astype(np.int32)
    return x, y


def local_slice(array, rank, world_size):
    n = len(array) // world_size
    return array[rank * n:(rank + 1) * n]


def _forward(model, loss_scale, with_bn=False):
    from food101.caffe2 import brew
    conv = brew.conv(model, "data", "conv", 3, 4, kernel=3)
    if with_bn:
        conv = brew.spatial_bn(model, conv, "conv_bn", 4, epsilon=1e-5, momentum=0.9, is_test=False)
    relu = brew.relu(model, conv, "relu")
    fc = brew.fc(model, relu, "fc", 4 * 4 * 4, CLASSES)
    softmax = brew.softmax(model, fc, "softmax")
    xent = model.LabelCrossEntropy([softmax, "label"], "xent")
    loss = model.AveragedLoss(xent, "loss")
    if loss_scale != 1.0:
        loss = model.Scale(loss, "loss_scaled", scale=loss_scale)
    return [loss]


def _sgd(model):
    from food101.caffe2 import optimizer
    return optimizer.build_sgd(model, base_learning_rate=0.1, momentum=0.9, policy="step",
                               stepsize=2, gamma=0.5)


class Replica:
    """One model in its own workspace: feed(step), run(), params()."""

    def __init__(self, kind, rank=0, world_size=1):
        from food101.caffe2 import data_parallel_model as dpm
        from food101.caffe2 import model_helper, optimizer, workspace
        self.kind, self.rank, self.world_size = kind, rank, world_size
        workspace.SwitchWorkspace("dist_" + kind, create_if_missing=True)
        workspace.ResetWorkspace()
        workspace.seed(rank + 7)  # different on purpose: the broadcast from rank 0 must fix it
        optimizer.reset_optimizer_instance_count()
        model = model_helper.ModelHelper(name="dist_" + kind)
        if kind == "dpm":
            dpm.Parallelize_CPU(model, input_builder_fun=lambda m: None,
                                forward_pass_builder_fun=_forward, optimizer_builder_fun=_sgd)
            self.prefix = "cpu_%d/" % model._devices[0]
        else:
            self.prefix = ""
            _forward(model, 1.0, with_bn=kind == "bn")
            model.AddGradientOperators(["loss"])
            optimizer.add_weight_decay(model, 1e-3)
            _sgd(model)
            if world_size > 1:
                grads = [str(model.param_to_grad[p]) for p in model.params]
                dpm.insert_gradient_allreduce(model.net, grads, average=True, bucket_cap_mb=0.0001)
                stats = dpm.trained_bn_statistics(model.net)
                dpm.add_param_broadcast(model.param_init_net, [str(p) for p in model.params] + stats)
                dpm.add_computed_param_sync(model.net, stats, "average")
            model._data_parallel_model_init_nets = [model.param_init_net]
            model._data_parallel_model_nets = [model.net]
            model._world_size = world_size
        self.model = model
        self.feed(1)
        dpm.RunInitNet(model)

    def feed(self, step):
        from food101.caffe2 import workspace
        x, y = batch(step)
        workspace.SwitchWorkspace("dist_" + self.kind)
        workspace.FeedBlob(self.prefix + "data", local_slice(x, self.rank, self.world_size))
        workspace.FeedBlob(self.prefix + "label", local_slice(y, self.rank, self.world_size))

    def step(self, step):
        from food101.caffe2 import data_parallel_model as dpm
        self.feed(step)
        dpm.RunNet(self.model, 1)

    def checkpoint_blobs(self):
        """{blob: array} of everything a checkpoint holds (GetCheckpointParams)."""
        from food101.caffe2 import data_parallel_model as dpm
        from food101.caffe2 import workspace
        workspace.SwitchWorkspace("dist_" + self.kind)
        values = {n: workspace.FetchBlob(n) for n in dpm.GetCheckpointParams(self.model)}
        return {n: v for n, v in values.items() if isinstance(v, np.ndarray)}

    def state(self):
        """checkpoint_blobs by name without the device scope, for comparisons across ranks;
        the per-device constants (ONE_<type>_<device id>) left out."""
        from food101.caffe2 import data_parallel_model as dpm
        return {dpm.stripBlobName(n): v for n, v in self.checkpoint_blobs().items()
                if not n.startswith("ONE_")}

    def load(self, blobs):
        from food101.caffe2 import workspace
        workspace.SwitchWorkspace("dist_" + self.kind)
        for name, value in blobs.items():
            workspace.FeedBlob(name, np.asarray(value))


def reference(kind, steps):
    """Single process, whole batches: the state after `steps` updates."""
    replica = Replica(kind)
    for step in range(1, steps + 1):
        replica.step(step)
    return replica.state()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("job", "resume"))
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--checkpoint")
    p.add_argument("--timeout", type=float, default=20.0)
    args = p.parse_args()
    from food101 import checkpoint
    from food101.train import distributed
    ctx = distributed.init_distributed(backend="gloo", device_type="cpu", timeout_s=args.timeout)
    rank, world = ctx.rank, ctx.world_size
    try:
        if args.mode == "job":
            # 1. `steps` updates of each model; every rank saves its state
            for kind in ("dpm", "trainer", "bn"):
                replica = Replica(kind, rank, world)
                for step in range(1, args.steps + 1):
                    replica.step(step)
                np.savez(os.path.join(args.out, "%s_rank%d.npz" % (kind, rank)), **replica.state())
            # 2. a fresh run in which rank 1 dies after update KILL_AFTER
            replica = Replica("dpm", rank, world)
            for step in range(1, args.steps + 2):
                replica.step(step)
                if rank == 0:  # only rank 0 writes checkpoints
                    checkpoint.save_checkpoint(
                        checkpoint.checkpoint_path(os.path.join(args.out, "snap"), step),
                        iteration=step, blobs=replica.checkpoint_blobs())
                if rank == 1 and step == KILL_AFTER:
                    os._exit(17)  # a crash: no cleanup, no goodbye to the process group
        else:  # resume: rank 0 reads the checkpoint, FinalizeAfterCheckpoint shares it
            from food101.caffe2 import data_parallel_model as dpm
            replica = Replica("dpm", rank, world)
            if rank == 0:  # rank 0 drives the same device (names) as when it saved
                replica.load(checkpoint.load_checkpoint(args.checkpoint)["blobs"])
            dpm.FinalizeAfterCheckpoint(replica.model)
            start = int(replica.state()["optimizer_iteration"][0])
            for step in range(start + 1, args.steps + 1):
                replica.step(step)
            np.savez(os.path.join(args.out, "resumed_rank%d.npz" % rank), **replica.state())
    except distributed.CollectiveError as e:
        print("error: %s" % e, file=sys.stderr, flush=True)
        os._exit(1)  # the group is broken: no orderly shutdown to wait for
    distributed.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skips seconds of interpreter teardown (torch's) that the tests would wait for


if __name__ == "__main__":
    main()
