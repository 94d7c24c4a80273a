"""Command-line papercuts (#16 item 9), tried as a user types them."""
import contextlib
import importlib.util
import io
import json
import os

import cv2
import numpy as np
import pytest
import torch

from food101.cli import normalize_gpu
from tests.support import REFERENCE, REPO, TOOLS
from tests.support.deploy_folder import standin_deploy

NO_CUDA = "no CUDA GPU is available"


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _tool_module(name):
    spec = importlib.util.spec_from_file_location("tool_" + name[:-3], os.path.join(TOOLS, name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAINS = {"predict.py": "predict_main", "evaluate.py": "evaluate_main"}


def tool(name, *args):
    """The tool as `python tools/<name> args...` runs it, in this process (fast): its exit
    status and what it printed."""
    module = _tool_module(name)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if name in MAINS:
                code = getattr(module, MAINS[name])(module.get_args_parser().parse_args(list(args)))
            else:
                code = module.main(list(args))
        except SystemExit as e:         # argparse errors
            code = e.code
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def deploy(tmp_path_factory):
    return standin_deploy(str(tmp_path_factory.mktemp("deploy")))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    good = []
    for k in range(2):
        path = str(folder / ("food%d.jpg" % k))
        cv2.imwrite(path, np.random.default_rng(k).integers(0, 256, (80, 90, 3), dtype=np.uint8))
        good.append(path)
    bad = str(folder / "broken.jpg")
    with open(bad, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 truncated jpeg")
    return good, bad


def test_normalize_gpu_leaves_ids_and_positionals_apart():
    assert normalize_gpu(["--model", "M", "--gpu", "x.jpg"]) == ["--model", "M", "--gpu=0", "x.jpg"]
    assert normalize_gpu(["--gpu", "1", "x.jpg"]) == ["--gpu", "1", "x.jpg"]
    assert normalize_gpu(["--gpu"]) == ["--gpu=0"]
    assert normalize_gpu(["--gpu", "--max-iter", "3"]) == ["--gpu=0", "--max-iter", "3"]


def _gpu_outcome(result):
    """Without CUDA the one message about the GPU, with it a normal run: never a parse error."""
    assert "invalid" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    if not torch.cuda.is_available():
        assert result.returncode == 2 and NO_CUDA in result.stderr, result.stderr


def test_predict_gpu_does_not_swallow_the_image(deploy, images):
    _gpu_outcome(tool("predict.py", "--model", deploy, "--gpu", images[0][0]))


def test_evaluate_gpu_does_not_swallow_the_model(deploy):
    lmdb = os.path.join(REFERENCE, "lmdb", "tensorprotos_byte.lmdb")
    _gpu_outcome(tool("evaluate.py", "--gpu", deploy, lmdb, "--no-progress"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_demo_gpu_checks_the_device_before_building_data(tmp_path):
    result = tool("demo.py", "--workdir", str(tmp_path / "demo"), "--gpu")
    assert result.returncode == 2 and NO_CUDA in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "demo")     # nothing was built first


def test_one_bad_image_does_not_stop_the_others(deploy, images):
    good, bad = images
    missing = os.path.join(os.path.dirname(bad), "missing.jpg")
    result = tool("predict.py", "--model", deploy, good[0], bad, missing, good[1])
    assert result.returncode == 1
    assert good[0] in result.stdout and good[1] in result.stdout and "1. " in result.stdout
    assert "error: %s: cannot read the image" % bad in result.stderr
    assert "error: %s: cannot read the image (no such file)" % missing in result.stderr
    assert "2 of 4 image(s) could not be read" in result.stderr
    assert "Traceback" not in result.stderr


def test_lr_schedule_max_iter_applies_to_the_policy():
    result = tool("lr_schedule.py", "--set", "solver.lr_policy=poly", "--set",
                  "solver.max_iter=1000", "--set", "solver.base_lr=0.01", "--max-iter", "100",
                  "--points", "3")
    assert result.returncode == 0, result.stderr
    rows = {int(a): float(b) for a, b in (l.split() for l in result.stdout.splitlines()
                                          if len(l.split()) == 2 and l.split()[0].isdigit())}
    assert rows[100] == 0.0 and rows[1] == pytest.approx(0.0099)   # poly over 100, not 1000
    assert "max_iter=100" in result.stdout


def test_shipped_solver_uses_a_policy_real_caffe2_accepts():
    from food101.train import config as C
    cfg = C.load_config(solver_path=os.path.join(REPO, "configs", "solver.prototxt"))
    with open(os.path.join(REFERENCE, "lr", "policies.json")) as f:
        real = json.load(f)             # written by real Caffe2 (tools/gen_lr_policies.py)
    assert not real["multistep"]["accepted"] and "Unknown learning rate policy" in \
        real["multistep"]["error"]
    assert real[cfg.solver.lr_policy]["accepted"], cfg.solver.lr_policy
    args = C.lr_policy_args(cfg.solver)
    assert set(args) == set(real[cfg.solver.lr_policy]["args"])
    from food101.caffe2.ops.learning_rate import learning_rate
    reference = real[cfg.solver.lr_policy]
    ours = learning_rate(cfg.solver.lr_policy, 10, -0.01, **reference["args"])
    assert float(ours) == pytest.approx(reference["lr_at_10"], rel=1e-6)
