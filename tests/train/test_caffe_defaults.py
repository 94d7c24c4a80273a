"""A Caffe solver run gets Caffe's data semantics, not the zoo's: the input channels come from
the records (seed_fneishnet is 1 x 24 x 15 grayscale), a transform_param without mean subtracts
nothing, without crop_size the whole (non-square) record is the input; the paths a net names are
saved absolute (a run resumes from any folder); the solver fields and solver-shaped mistakes a
Caffe user brings get a clear word."""
import logging
import os
import shutil
import sys

import numpy as np
import pytest
import torch

from food101.data.augment import Augment, center_crop, crop_normalize, crop_params
from food101.interop.caffe import caffe_pb2
from food101.train import config as C
from food101.train.cli import config_from_args, train_main
from tests.interop import caffe_fixtures as cf
from tests.support import REPO

sys.path.insert(0, os.path.join(REPO, "tools"))
import train as train_tool  # noqa: E402

DATA = os.path.join("examples", "fneishnet_numbers")


def _gray_lmdb(path, n, seed, shape=(1, 24, 15), classes=11):
    """convert_imageset-style Datum records: uint8 C x H x W, a class-dependent bright column."""
    import lmdb
    rng = np.random.RandomState(seed)
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in range(n):
            image = (rng.rand(*shape) * 60).astype(np.uint8)
            image[:, :, (i % classes) * shape[2] // classes] = 250
            datum = caffe_pb2.Datum(channels=shape[0], height=shape[1], width=shape[2],
                                    data=image.tobytes(), label=i % classes)
            txn.put(b"%08d" % i, datum.SerializeToString())
    env.close()


@pytest.fixture
def fneish(tmp_path):
    """seed_fneishnet's Caffe tree as its user has it: solver at the root, the net under
    models/, 1 x 24 x 15 Datum LMDBs under examples/ (the paths the net's `source` names)."""
    root = tmp_path / "caffe"
    (root / "models" / "fneishnet_numbers").mkdir(parents=True)
    shutil.copy(cf.net_path("seed_fneishnet/train_val.prototxt"),
                str(root / "models" / "fneishnet_numbers" / "train_val.prototxt"))
    shutil.copy(cf.net_path("seed_fneishnet/solver.prototxt"), str(root / "solver.prototxt"))
    (root / DATA).mkdir(parents=True)
    _gray_lmdb(root / DATA / "fneishnet_numbers_train_lmdb", 33, seed=0)
    _gray_lmdb(root / DATA / "fneishnet_numbers_val_lmdb", 22, seed=1)
    return root


def _train(args, capsys):
    code = train_main(train_tool.get_args_parser().parse_args(args))
    printed = capsys.readouterr()
    return code, printed.out + printed.err


def test_grayscale_fneishnet_trains_on_whole_records_and_resumes_from_another_folder(
        fneish, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(fneish)
    cfg = C.load_config(solver_path="solver.prototxt")
    # Caffe's DataTransformer defaults: no crop (the whole 24 x 15 record), nothing subtracted
    assert (cfg.data.crop_size, cfg.data.mean, cfg.data.mirror) == (0, (0.0,), False)
    assert cfg.data.train_lmdb == str(fneish / DATA / "fneishnet_numbers_train_lmdb")
    assert cfg.data.test_lmdb == str(fneish / DATA / "fneishnet_numbers_val_lmdb")
    run = tmp_path / "run"
    code, text = _train(["--solver", "solver.prototxt", "--max-iter", "3", "--output-dir", str(run),
                         "--no-progress", "--set", "data.batch_size=8",
                         "--set", "data.test_batch_size=11", "--set", "solver.snapshot=3",
                         "--set", "diagnostics.stats_interval=0"], capsys)
    assert code == 0, text
    assert "mean has 3 values" not in text and "channel mismatch" not in text
    from food101.zoo import load
    deployed = load(str(run / "deploy"))
    assert list(deployed.input_shape) == [1, 1, 24, 15]  # the records' channels and size
    saved = C.load_yaml(str(run / "config.yaml"))
    assert os.path.isabs(saved["data"]["train_lmdb"]) and os.path.isabs(saved["data"]["test_lmdb"])
    checkpoint = [line.split(": ", 1)[1] for line in text.splitlines()
                  if line.startswith("checkpoint: ")][0]
    # the printed resume command works from anywhere, not only the folder training started in
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, text = _train(["--resume", checkpoint, "--max-iter", "4", "--no-progress"], capsys)
    assert code == 0, text
    assert "done: 4 iterations" in text


def test_mean_value_and_crop_size_given_in_the_net_are_used(fneish, monkeypatch, capsys):
    monkeypatch.chdir(fneish)
    net = fneish / "models" / "fneishnet_numbers" / "train_val.prototxt"
    text = net.read_text()
    net.write_text(text.replace("  data_param {\n    source: \"examples/fneishnet_numbers/"
                                "fneishnet_numbers_train_lmdb\"",
                                "  transform_param { mean_value: 33 crop_size: 30 }\n  data_param {\n"
                                "    source: \"examples/fneishnet_numbers/fneishnet_numbers_train_lmdb\""))
    cfg = C.load_config(solver_path="solver.prototxt")
    assert (cfg.data.crop_size, cfg.data.mean) == (30, (33.0,))  # one value: every channel's
    code, text = _train(["--solver", "solver.prototxt", "--max-iter", "1", "--no-progress",
                         "--output-dir", str(fneish / "run")], capsys)
    assert code == 2
    assert ("data.crop_size 30 (the crop_size of %s's TRAIN Data layer) is larger than the 24x15 "
            "images" % net) in text
    assert "or 0 for the whole image" in text


def test_no_crop_is_expressible_and_crops_nothing():
    assert C.load_config(overrides={"data.crop_size": 0}).data.crop_size == 0
    with pytest.raises(C.ConfigError, match="or 0 for no crop"):
        C.load_config(overrides={"data.crop_size": -1})
    images = torch.randint(0, 256, (4, 1, 24, 15), dtype=torch.uint8)
    out = Augment(0, train=True, mirror=True, mean=(5.0,), generator=torch.Generator().manual_seed(0))(images)
    assert out.shape == (4, 1, 24, 15)
    flipped = images.flip(-1).float() - 5
    for i in range(4):  # each image whole, mirrored or not
        assert torch.equal(out[i], images[i].float() - 5) or torch.equal(out[i], flipped[i])
    assert torch.equal(center_crop(images, 0, mean=(0.0,)), images.float())
    records = [images[i].numpy() for i in range(4)]  # the reader's zero-copy path
    whole = Augment(0, train=False, mean=(5.0,)).apply_to_records(records, [0] * 4)[0]
    assert torch.equal(whole, images.float() - 5)
    top, left, flip = crop_params(4, 24, 15, 0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(crop_normalize(images, top, left, flip, 0, mean=(5.0,), method="gather"),
                       crop_normalize(images, top, left, flip, 0, mean=(5.0,), method="numpy"))


def test_missing_source_names_the_layer_the_net_and_the_folders(fneish, tmp_path, monkeypatch,
                                                                 capsys):
    shutil.rmtree(str(fneish / DATA / "fneishnet_numbers_train_lmdb"))
    monkeypatch.chdir(fneish)
    code, text = _train(["--solver", "solver.prototxt", "--no-progress", "--output-dir",
                         str(tmp_path / "run")], capsys)
    assert code == 2
    assert "the source of layer 'inlayer1' in %s" % (
        fneish / "models" / "fneishnet_numbers" / "train_val.prototxt") in text
    assert "looked in %s and %s" % (fneish / DATA / "fneishnet_numbers_train_lmdb",
                                    fneish / "models" / "fneishnet_numbers" / DATA /
                                    "fneishnet_numbers_train_lmdb") in text


def test_harmless_solver_fields_are_ignored_with_a_warning(fneish, monkeypatch, caplog):
    monkeypatch.chdir(fneish)
    with open("solver.prototxt", "a") as f:
        f.write('snapshot_format: BINARYPROTO\ndebug_info: false\n')
    with caplog.at_level(logging.WARNING):
        cfg = C.load_config(solver_path="solver.prototxt")
    assert cfg.model.caffe_net
    assert "solver field 'snapshot_format' is ignored: checkpoints are this project's .ckpt" in caplog.text
    assert "solver field 'debug_info' is ignored" in caplog.text
    with open("solver.prototxt", "a") as f:
        f.write("clip_gradients: 10\n")  # changes the run: still refused
    with pytest.raises(C.ConfigError, match="clip_gradients.*not supported"):
        C.load_config(solver_path="solver.prototxt")


def test_solver_shaped_mistakes_get_a_clear_word(fneish, monkeypatch, capsys):
    monkeypatch.chdir(fneish)
    net = str(fneish / "models" / "fneishnet_numbers" / "train_val.prototxt")
    with pytest.raises(C.ConfigError, match="is a Caffe net .* not a solver: pass the solver.prototxt"):
        C.load_config(solver_path=net)
    # a net-less solver is the documented way to give the zoo model solver settings: one line
    (fneish / "nonet.prototxt").write_text("base_lr: 0.001\nmax_iter: 10\n")
    code, text = _train(["--solver", "nonet.prototxt", "--print-config"], capsys)
    assert code == 0
    assert "note: nonet.prototxt has no `net:` line: its solver settings apply to the zoo model" in text
    # solver_mode GPU from the solver, no GPU here, no --gpu given: the CPU, with a warning
    (fneish / "gpu.prototxt").write_text((fneish / "solver.prototxt").read_text()
                                         .replace("solver_mode: CPU", "solver_mode: GPU"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = train_tool.get_args_parser().parse_args(["--solver", "gpu.prototxt"])
    cfg = config_from_args(args)
    assert cfg.solver.solver_mode == "CPU"
    assert "gpu.prototxt sets solver_mode: GPU but no CUDA GPU is available" in capsys.readouterr().err
