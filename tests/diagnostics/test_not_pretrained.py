"""Seed-0's mistake caught from the tools (#16 item 10): a zoo init_net.pb made only of
XavierFill/ConstantFill was accepted silently; a short run never heard "loss at chance"."""
import os

import pytest

from food101 import zoo
from food101.caffe2 import core
from food101.caffe2.proto import caffe2_pb2, save_net
from food101.diagnostics import WARNING, Diagnostics
from food101.diagnostics.health import chance_patience, check_not_pretrained
from tests.diagnostics import test_reinitialised_weights as story1
from tests.diagnostics.test_reinitialised_weights import one_thread  # noqa: F401 (autouse)
from tests.support import ZOO


def random_zoo_folder(dest):
    """The stand-in's predict net with an init net that draws every blob: XavierFill for the
    weights, ConstantFill for the biases (what a "zoo" folder written by a seed script holds)."""
    model = zoo.load(ZOO)
    init = caffe2_pb2.NetDef(name="random_init")
    for name, value in model.weights().items():
        shape = list(value.shape)
        if len(shape) > 1:
            init.op.extend([core.CreateOperator("XavierFill", [], [name], shape=shape)])
        else:
            init.op.extend([core.CreateOperator("ConstantFill", [], [name], shape=shape, value=0.0)])
    os.makedirs(dest)
    save_net(init, os.path.join(dest, "init_net.pb"))
    save_net(model.predict_net, os.path.join(dest, "predict_net.pb"))
    with open(os.path.join(ZOO, "value_info.json")) as src, \
            open(os.path.join(dest, "value_info.json"), "w") as out:
        out.write(src.read())
    return dest


def test_random_fill_zoo_is_named_not_pretrained(tmp_path):
    folder = random_zoo_folder(str(tmp_path / "seed0_zoo"))
    model = zoo.load(folder)
    (finding,) = check_not_pretrained(model)
    assert finding.code == "not_pretrained" and finding.severity == WARNING
    assert "is not pretrained" in finding.message and folder in finding.message
    assert "XavierFill x" in finding.message and "ConstantFill x" in finding.message
    assert "training from scratch" in finding.message
    assert check_not_pretrained(zoo.load(ZOO)) == []      # given values: pretrained (stand-in)


def test_the_training_tool_says_so(tmp_path):
    from food101.data import build_lmdb
    from food101.data.synthetic import make_demo_dataset
    folder = random_zoo_folder(str(tmp_path / "seed0_zoo"))
    demo = make_demo_dataset(str(tmp_path / "d"), train_per_class=2, test_per_class=0, max_side=48)
    lmdb = build_lmdb(demo.root, "train", str(tmp_path / "db"), size=32, workers=0,
                      progress=False).out
    import subprocess
    import sys
    from tests.support import TOOLS
    result = subprocess.run(
        [sys.executable, os.path.join(TOOLS, "train.py"), "--zoo-dir", folder, "--train-lmdb", lmdb,
         "--test-lmdb", "", "--output-dir", str(tmp_path / "run"), "--max-iter", "2",
         "--batch-size", "4", "--set", "data.crop_size=27", "--set", "model.num_classes=6",
         "--set", "train.plots=false", "--set", "train.export=false", "--no-progress"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not_pretrained" in result.stdout or "is not pretrained" in result.stdout
    with open(os.path.join(str(tmp_path / "run"), "metrics.jsonl")) as f:
        assert '"code": "not_pretrained"' in f.read()


def test_chance_patience_scales_with_the_run():
    assert chance_patience(500, 60) == 15 and chance_patience(500, 40) == 10
    assert chance_patience(500, 100000) == 500 and chance_patience(0, 60) == 0
    assert chance_patience(500, None) == 500


def test_a_short_run_at_chance_hears_it(monkeypatch):
    # story 1's re-initialised backbone, 60 iterations, with the default patience of 500
    monkeypatch.setattr(story1, "SETTINGS", dict(story1.SETTINGS, chance_patience=500))
    diag, _start, _losses, _records, _lines = story1.fine_tune(reinit=True)
    stuck = [f for f in diag.findings if f.code == "stuck_at_chance"]
    assert stuck and stuck[0].iteration <= story1.ITERS
