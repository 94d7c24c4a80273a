"""Parallelize with devices=[0, 1]: refused in one process with the exact torchrun command, and
the same script, unchanged, trains two identical replicas under torchrun (CPU, Gloo)."""
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from food101.caffe2 import data_parallel_model as dpm
from food101.caffe2 import model_helper
from tests.support import REPO

SCRIPT = os.path.join(REPO, "tests", "support", "parallelize_script.py")


def test_refusal_names_the_torchrun_command(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["cifar_multi_gpu.py", "--epochs", "2"])
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    model = model_helper.ModelHelper(name="multi")
    with pytest.raises(ValueError, match=r"torchrun --nproc_per_node 2 --standalone "
                                         r"cifar_multi_gpu.py --epochs 2 -- each process"):
        dpm.Parallelize_GPU(model, input_builder_fun=lambda m: None,
                            forward_pass_builder_fun=lambda m, s: [], devices=[0, 1])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_unchanged_script_under_torchrun_trains_identical_replicas(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, PARALLELIZE_OUT=str(tmp_path), OMP_NUM_THREADS="1",
               GLOO_SOCKET_IFNAME="lo")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), SCRIPT]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    w0, w1 = (np.load(tmp_path / ("fc_w_%d.npy" % r)) for r in (0, 1))
    np.testing.assert_array_equal(w0, w1)   # one all-reduced update on both replicas
