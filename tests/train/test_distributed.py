"""Data-parallel training on torch.distributed, checked on the CPU with Gloo on 127.0.0.1.

Two ranks (tests/support/distributed_worker.py processes with torchrun's environment) must hold
identical params after every run, equal within float tolerance to one process trained on the
concatenated batches; a rank that dies makes the other fail with a clear message; a resume
from the last checkpoint completes and lands where the uninterrupted single process does.
The in-process tests cover the net surgery, the learning-rate rule and the error messages.
"""
import os
import pickle
import socket
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import torch

from tests.support import distributed_worker as worker
from food101.caffe2 import core, data_parallel_model as dpm, model_helper, workspace
from food101.caffe2.ops.collective import CollectiveError, CommonWorld
from food101.caffe2.ops.learning_rate import learning_rate
from food101.caffe2.utils import ArgsToDict
from food101.train import distributed
from tests.support import REPO, ZOO

ROOT = REPO
WORKER = os.path.join(REPO, "tests", "support", "distributed_worker.py")
STEPS = 3
TIMEOUT_S = 15          # the process group timeout of the workers
JOB_LIMIT_S = 120       # a hung job fails the test instead of hanging it


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loopback_interface():
    return next((name for _, name in socket.if_nameindex() if name.startswith("lo")), "lo")


def launch(mode, out, *args, world_size=2):
    """Start `world_size` ranks of the worker on 127.0.0.1; [(returncode, stdout, stderr)]."""
    port, started = _free_port(), time.monotonic()
    procs = []
    for rank in range(world_size):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                   LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), GLOO_SOCKET_IFNAME=_loopback_interface(),
                   OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
        procs.append(subprocess.Popen(
            [sys.executable, WORKER, mode, "--out", str(out), "--timeout", str(TIMEOUT_S)] + list(args),
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    try:
        for proc in procs:
            remaining = max(1.0, JOB_LIMIT_S - (time.monotonic() - started))
            stdout, stderr = proc.communicate(timeout=remaining)
            results.append((proc.returncode, stdout, stderr))
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        pytest.fail("the %s job did not finish within %ds" % (mode, JOB_LIMIT_S))
    return results, time.monotonic() - started


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """The two-rank job: STEPS updates of each model, then a run in which rank 1 dies."""
    out = tmp_path_factory.mktemp("distributed_job")
    results, seconds = launch("job", out, "--steps", str(STEPS))
    return types.SimpleNamespace(out=out, results=results, seconds=seconds)


def _load(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _assert_states_close(got, want, atol=1e-5):
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=atol, err_msg=name)


# ------------------------------------------------------------------------------ the two-rank job
@pytest.mark.parametrize("kind", ["dpm", "trainer"])
def test_two_ranks_equal_one_process_on_the_concatenated_batches(job, kind):
    """AveragedLoss over each rank's half + gradient averaging == AveragedLoss over the batch
    (dpm: loss scaled by 1/world size, gradients summed, as Caffe2's data_parallel_model)."""
    rank0 = _load(job.out / ("%s_rank0.npz" % kind))
    rank1 = _load(job.out / ("%s_rank1.npz" % kind))
    assert sorted(rank0) == sorted(rank1)
    for name in rank0:  # not just close: the same all-reduced bits on every rank
        np.testing.assert_array_equal(rank0[name], rank1[name], err_msg=name)
    assert int(rank0["optimizer_iteration"][0]) == STEPS
    _assert_states_close(rank0, worker.reference(kind, STEPS))


def test_bn_running_statistics_are_averaged_over_ranks(job):
    rank0, rank1 = _load(job.out / "bn_rank0.npz"), _load(job.out / "bn_rank1.npz")
    for name in rank0:
        np.testing.assert_array_equal(rank0[name], rank1[name], err_msg=name)
    single = worker.reference("bn", STEPS)
    # batch statistics stay per rank (no SyncBN), so BN nets differ from one process
    assert not np.allclose(rank0["conv_bn_rm"], single["conv_bn_rm"], atol=1e-6)


def test_a_dead_rank_fails_the_job_with_a_clear_message(job):
    (rc0, _, err0), (rc1, _, _) = job.results
    assert rc1 == 17, "rank 1 should have died by os._exit(17)"
    assert rc0 == 1, "rank 0 should fail, got exit status %s:\n%s" % (rc0, err0[-2000:])
    assert "Allreduce failed on rank 0 of 2" in err0
    assert "another rank exited" in err0 and "--resume" in err0
    assert "Traceback" not in err0
    assert job.seconds < JOB_LIMIT_S
    checkpoints = sorted(p.name for p in job.out.glob("snap_iter_*.ckpt"))
    assert checkpoints == ["snap_iter_1.ckpt", "snap_iter_2.ckpt"]


def test_resume_from_the_last_checkpoint_completes(job, tmp_path):
    from food101.checkpoint import latest_checkpoint
    last = latest_checkpoint(str(job.out))
    assert last.endswith("snap_iter_2.ckpt")
    results, _ = launch("resume", tmp_path, "--checkpoint", last, "--steps", str(STEPS + 1))
    for rank, (rc, _, err) in enumerate(results):
        assert rc == 0, "rank %d failed:\n%s" % (rank, err[-3000:])
    rank0, rank1 = _load(tmp_path / "resumed_rank0.npz"), _load(tmp_path / "resumed_rank1.npz")
    for name in rank0:
        np.testing.assert_array_equal(rank0[name], rank1[name], err_msg=name)
    assert int(rank0["optimizer_iteration"][0]) == STEPS + 1
    _assert_states_close(rank0, worker.reference("dpm", STEPS + 1))


# ------------------------------------------------------------------------------ in one process
@pytest.fixture
def one_rank_group():
    """A one-process Gloo group on 127.0.0.1, for the ops' own behaviour."""
    torch.distributed.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % _free_port(),
                                         rank=0, world_size=1)
    yield
    torch.distributed.destroy_process_group()


def test_allreduce_is_functional_and_bucketed(one_rank_group):
    a = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    b = torch.ones(5, dtype=torch.float32)
    c = torch.tensor([3], dtype=torch.int64)
    workspace.FeedTensor("a", a)
    workspace.FeedTensor("b", b)
    workspace.FeedTensor("c", c)
    net = core.Net("reduce")
    net.CreateCommonWorld([], "cw")
    # a cap of 16 bytes puts every float tensor in its own bucket
    net.Allreduce(["cw", "a", "b", "c"], ["a", "b", "c"], average=1, bucket_cap_mb=16 / 2 ** 20)
    workspace.RunNetOnce(net)
    np.testing.assert_array_equal(workspace.FetchBlob("a"), a.numpy())
    np.testing.assert_array_equal(workspace.FetchBlob("b"), b.numpy())
    assert workspace.FetchBlob("c").tolist() == [3]
    assert workspace.FetchTensor("a") is not a  # rebound to a new tensor, the input untouched
    assert isinstance(workspace.FetchBlob("cw"), CommonWorld)
    assert "rank 0 of 1" in repr(workspace.FetchBlob("cw"))


def test_create_common_world_checks_the_size(one_rank_group):
    net = core.Net("cw")
    net.CreateCommonWorld([], "cw", size=4)
    with pytest.raises(CollectiveError, match="size=4 but torch.distributed has 1"):
        workspace.RunNetOnce(net)


def test_collectives_without_a_process_group_say_how_to_launch():
    workspace.FeedBlob("g", np.ones(3, np.float32))
    net = core.Net("no_group")
    net.Allreduce(["g"], ["g"])
    with pytest.raises(CollectiveError, match="torchrun"):
        workspace.RunNetOnce(net)


def test_common_world_pickles_as_a_marker():
    world = pickle.loads(pickle.dumps(CommonWorld(group=object())))
    assert world.group is None


def test_init_distributed_outside_torchrun_says_how(monkeypatch):
    for name in distributed.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(distributed.DistributedError, match="torchrun --nproc_per_node"):
        distributed.init_distributed()


def test_parallelize_with_several_devices_in_one_process_is_refused():
    model = model_helper.ModelHelper(name="multi")
    with pytest.raises(ValueError, match="one process per device.*torchrun --nproc_per_node 2"):
        dpm.Parallelize_GPU(model, input_builder_fun=lambda m: None,
                            forward_pass_builder_fun=lambda m, s: [], devices=[0, 1])


def test_parallelize_alone_builds_a_plain_single_replica():
    model = model_helper.ModelHelper(name="alone")
    dpm.Parallelize_CPU(model, input_builder_fun=lambda m: None,
                        forward_pass_builder_fun=worker._forward, optimizer_builder_fun=worker._sgd)
    types_ = [op.type for net in (model.net, model.param_init_net) for op in net.Proto().op]
    assert "Allreduce" not in types_ and "Broadcast" not in types_
    assert [str(p) for p in model.params] == ["cpu_0/conv_w", "cpu_0/conv_b", "cpu_0/fc_w", "cpu_0/fc_b"]
    assert model._devices == [0] and model._world_size == 1


def test_gradient_allreduce_goes_between_backward_and_the_update():
    model = model_helper.ModelHelper(name="surgery")
    worker._forward(model, 1.0)
    model.AddGradientOperators(["loss"])
    worker._sgd(model)
    grads = [str(model.param_to_grad[p]) for p in model.params]
    index = dpm.insert_gradient_allreduce(model.net, grads)
    ops = model.net.Proto().op
    assert ops[index - 1].type == "AutogradGradient"
    assert ops[index].type == "Allreduce"
    assert list(ops[index].input) == ["comm_world"] + grads[::-1]  # last layers first
    assert list(ops[index].output) == grads[::-1]
    assert all(op.type != "MomentumSGDUpdate" for op in ops[:index])


def test_linear_scaling_rule():
    assert distributed.lr_scale_factor(8, 32) == 8.0
    assert distributed.lr_scale_factor(8, 32, iter_size=2, reference_batch=256) == 2.0
    assert distributed.lr_scale_factor(8, 32, rule="none") == 1.0
    with pytest.raises(ValueError, match="linear, none"):
        distributed.lr_scale_factor(8, 32, rule="sqrt")


def _lr_op(net):
    op = next(op for op in net.Proto().op if op.type == "LearningRate")
    return ArgsToDict(op.arg)


def _rates(net, iterations):
    """The LearningRate op's output at each iteration, run through the real op."""
    out = []
    for it in iterations:
        workspace.FeedBlob("it", np.array([it], np.int64))
        workspace.RunNetOnce(net)
        out.append(float(workspace.FetchBlob("lr")[0]))
    return out


def test_learning_rate_scaled_with_linear_warmup():
    net = core.Net("lr")
    net.LearningRate(["it"], "lr", base_lr=-0.01, policy="step", stepsize=150, gamma=0.1)
    dpm.scale_learning_rate_ops(net, 8.0)
    dpm.add_lr_warmup(net, 100, 1.0 / 8)
    args = _lr_op(net)
    assert args["policy"] == "composite" and args["sub_policy_num_iters"][0] == 100
    rates = _rates(net, [1, 50, 100, 101, 149, 150, 400])
    k = 0.125
    expected = [-0.08 * (k + (1 - k) * it / 100) for it in (1, 50, 100)]
    expected += [learning_rate("step", it, -0.08, stepsize=150, gamma=0.1) for it in (101, 149, 150, 400)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)


def test_warmup_prepends_to_a_composite_policy():
    net = core.Net("lr_composite")
    net.LearningRate(["it"], "lr", base_lr=-0.1, policy="composite", sub_policy_num_iters=[10, 20],
                     sub_policy_0_policy="fixed", sub_policy_1_policy="step",
                     sub_policy_1_stepsize=5, sub_policy_1_gamma=0.5)
    dpm.add_lr_warmup(net, 4, 0.5)
    args = _lr_op(net)
    assert args["sub_policy_num_iters"] == [4, 10, 20]
    assert args["sub_policy_0_policy"] == "linearWarmup"
    assert args["sub_policy_2_policy"] == "step" and args["sub_policy_2_stepsize"] == 5
    np.testing.assert_allclose(_rates(net, [2, 5, 20]), [-0.1 * 0.75, -0.1, -0.1 * 0.5 ** 4],
                               rtol=1e-6)


def test_reader_state_of_rank0_becomes_each_ranks_own():
    reader = types.SimpleNamespace(rank=1, world_size=2, shuffle=False, num_records=11,
                                   shard_size=lambda: 5)
    # rank 0 (6 records a pass) consumed 14 records: epoch 2, position 2
    state = {"epoch": 2, "position": 2, "rank": 0, "world_size": 2, "num_records": 11,
             "shuffle": False, "seed": 0}
    mine = distributed.reader_state_for_rank(state, reader)
    assert (mine["rank"], mine["epoch"], mine["position"]) == (1, 2, 4)  # 14 = 2 * 5 + 4
    with pytest.raises(ValueError, match="same number of processes"):
        distributed.reader_state_for_rank(dict(state, world_size=4), reader)


# ------------------------------------------------------------------------------ tools/train.py
def _train_py(out, overrides, *extra):
    """torchrun --nproc_per_node 2 tools/train.py --cpu --distributed ... on 127.0.0.1."""
    env = dict(os.environ, GLOO_SOCKET_IFNAME=_loopback_interface(), OMP_NUM_THREADS="1",
               PYTHONPATH=ROOT)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
               os.path.join(ROOT, "tools", "train.py"), "--cpu", "--distributed",
               "--output-dir", str(out)] + list(extra)
    for item in overrides:
        command += ["--set", item]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=JOB_LIMIT_S)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert run.stdout.count("done: 6 iterations") == 1  # rank 0 reports for the job
    return run


def test_train_py_distributed_equals_one_process_and_resumes_exactly(tmp_path):
    """torchrun --nproc_per_node 2 tools/train.py --cpu --distributed, batch 8 per rank, linear
    lr scaling == one process with batch 16 and twice the base lr (no random crop, mirror or
    dropout, so both see the same images the same way). Only rank 0 writes files. 3 updates +
    resume + 3 updates on both ranks == 6 updates, bit for bit."""
    import json
    from food101.data.demo import make_demo_dataset
    from food101.data.writer import build_lmdb
    from food101.train import config as C
    from food101.train import fine_tune
    from food101.checkpoint import load_checkpoint
    dataset = make_demo_dataset(str(tmp_path / "food"), train_per_class=16, test_per_class=1,
                                max_side=64, seed=0)
    lmdb = str(tmp_path / "train_lmdb")
    build_lmdb(dataset.root, "train", lmdb, size=48, workers=0, progress=False)
    zoo = ZOO
    common = ["data.train_lmdb=" + lmdb, "data.crop_size=48", "data.mirror=false",
              "model.zoo_dir=" + zoo, "model.num_classes=6", "model.unfreeze_from=fire9",
              "model.train_dropout=false", "solver.max_iter=6", "solver.display=2",
              "solver.snapshot=3", "solver.random_seed=3", "solver.lr_policy=fixed",
              "train.progress=false", "train.plots=false", "train.export=false",
              "distributed.warmup_iters=0"]
    out = tmp_path / "two_ranks"
    _train_py(out, common, "--batch-size", "8", "--base-lr", "0.01")
    log = (out / "train.log").read_text()
    assert "Data-parallel: 2 ranks (gloo), 16 images per update; lr x 2 (linear)" in log
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in records if r["phase"] == "train"]
    assert [r["iteration"] for r in records] == [1, 2, 3, 4, 5, 6]  # one writer
    assert abs(records[-1]["lr"] - 0.02) < 1e-9

    cfg = C.load_config(overrides=common + ["train.output_dir=%s" % (tmp_path / "one"),
                                            "data.batch_size=16", "solver.base_lr=0.02"])
    single = load_checkpoint(fine_tune(cfg, stream=open(os.devnull, "w"))["checkpoint"])["blobs"]
    two = load_checkpoint(str(out / "snapshots"))["blobs"]
    assert int(two["optimizer_iteration"][0]) == 6
    for name, value in single.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            np.testing.assert_allclose(two[name].numpy(), value.numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=name)

    resumed = tmp_path / "resumed"
    _train_py(resumed, [], "--resume", str(out / "snapshots" / "squeezenet_food101_iter_3.ckpt"))
    again = load_checkpoint(str(resumed / "snapshots"))["blobs"]
    for name, value in two.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(again[name], value), name
