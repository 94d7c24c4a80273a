"""Fuzzing every loader (#16 item 11): byte flips and truncations of .pb / .pbtxt files, LMDB
records and data files, YAML and solver.prototxt configs, checkpoints and deploy folders.

Seeded and bounded (a fixed number of cases per target, a few seconds in all). Each case must
end either loaded or in the project's own clear error - an exception of the project's error
classes whose message names the file - never another exception (a bare traceback), a signal or
a hang. LMDB data files run in a child process, so a SIGBUS/SIGSEGV shows as that case's
failure instead of killing the test run. `python tests/test_fuzz_loaders.py` prints the counts.
"""
import collections
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from food101.caffe2.errors import Caffe2Error
from food101.data.records import RecordError
from food101.checkpoint import CheckpointError
from food101.train.config import ConfigError
from tests.support import REPO, ZOO

SEED = 1601
CASES = 12                 # per target and mutation kind
CLEAR = (Caffe2Error, ConfigError, CheckpointError, RecordError)


def mutations(data, rng, cases=CASES):
    """(kind, bytes): `cases` byte-flip variants (1-8 random bytes XORed) and `cases`
    truncations, drawn from `rng`."""
    out = []
    for _ in range(cases):
        flipped = bytearray(data)
        for pos in rng.integers(0, len(data), rng.integers(1, 9)):
            flipped[pos] ^= int(rng.integers(1, 256))
        out.append(("flip", bytes(flipped)))
    for _ in range(cases):
        out.append(("truncate", data[:int(rng.integers(0, len(data)))]))
    return out


def classify(call, path):
    """"loaded", "clear error" or "CRASH: ..." for one loader call on a damaged `path`."""
    try:
        call()
    except CLEAR as e:
        named = os.path.basename(path) in str(e) or os.path.basename(os.path.dirname(path)) in str(e)
        return "clear error" if named else "CRASH: message does not name the file: %s" % e
    except Exception as e:  # noqa: BLE001 - the point: anything else is a bare traceback
        return "CRASH: %s: %s" % (type(e).__name__, e)
    return "loaded"


# ------------------------------------------------------------------------------ small inputs
def tiny_model(folder):
    """A small deploy folder (conv -> relu -> global pool -> softmax, 3 classes, crop 8)."""
    from food101 import zoo
    from food101.caffe2 import brew, model_helper, workspace
    from food101.interop import export
    m = model_helper.ModelHelper(name="tiny")
    brew.conv(m, "data", "conv", 3, 3, kernel=3, pad=1)
    brew.relu(m, "conv", "conv")
    brew.average_pool(m, "conv", "pool", global_pooling=True)
    brew.softmax(m, "pool", "softmaxout")
    workspace.RunNetOnce(m.param_init_net)
    weights = {p: workspace.FetchBlob(p) for p in ("conv_w", "conv_b")}
    model = zoo.ZooModel(m.param_init_net.Proto(), m.net.Proto(), "data", (1, 3, 8, 8),
                         output_name="softmaxout", class_names=["a", "b", "c"])
    export.to_caffe2(model, folder, weights=weights, crop=8)
    return model, weights


def tiny_checkpoint(path, model, weights):
    from food101.checkpoint import save_checkpoint
    save_checkpoint(path, iteration=3, blobs=weights, reader={}, rng={}, config={},
                    trainer={"test_net": model.predict_net.SerializeToString(), "class_names": ["a", "b", "c"],
                             "io": {"data": "data", "label": "label", "probs": "softmaxout",
                                    "crop_size": 8, "mean": [104.0, 117.0, 123.0]}})
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz_inputs")
    deploy = str(base / "deploy")
    model, weights = tiny_model(deploy)
    ckpt = tiny_checkpoint(str(base / "tiny_iter_3.ckpt"), model, weights)
    return {"deploy": deploy, "ckpt": ckpt, "base": str(base)}


def run_target(tmp_path, name, source, loader, rng, outcomes):
    with open(source, "rb") as f:
        data = f.read()
    for k, (kind, damaged) in enumerate(mutations(data, rng)):
        folder = tmp_path / ("%s_%d" % (name, k))
        folder.mkdir()
        path = str(folder / os.path.basename(source))
        with open(path, "wb") as f:
            f.write(damaged)
        outcomes[(name, kind, classify(lambda: loader(path), path))] += 1


def _deploy_loader(deploy, file_name):
    """Load a copy of `deploy` whose `file_name` is the damaged file, and run it once."""
    def load(path):
        import torch
        from food101.inference.predict import load_model
        folder = os.path.dirname(path)
        for name in os.listdir(deploy):
            if name != file_name:
                shutil.copy(os.path.join(deploy, name), os.path.join(folder, name))
        model = load_model(folder)
        model.probabilities(torch.zeros(1, 3, model.crop, model.crop))
    return load


def test_fuzz_every_loader(inputs, tmp_path):
    from food101 import zoo
    from food101.caffe2.proto import load_net
    from food101.inference.predict import load_model
    from food101.train.config import load_config
    rng = np.random.default_rng(SEED)
    outcomes = collections.Counter()
    targets = [
        ("predict_net.pb", os.path.join(inputs["deploy"], "predict_net.pb"),
         _deploy_loader(inputs["deploy"], "predict_net.pb")),
        ("init_net.pb", os.path.join(inputs["deploy"], "init_net.pb"),
         _deploy_loader(inputs["deploy"], "init_net.pb")),
        ("preprocess.json", os.path.join(inputs["deploy"], "preprocess.json"),
         _deploy_loader(inputs["deploy"], "preprocess.json")),
        ("labels.txt", os.path.join(inputs["deploy"], "labels.txt"),
         _deploy_loader(inputs["deploy"], "labels.txt")),
        ("value_info.json", os.path.join(inputs["deploy"], "value_info.json"),
         lambda p: (_copy_others(inputs["deploy"], p), zoo.load(os.path.dirname(p)))),
        ("zoo predict_net.pbtxt", os.path.join(ZOO, "predict_net.pbtxt"), load_net),
        ("config.yaml", os.path.join(REPO, "configs", "food101_squeezenet.yaml"),
         lambda p: load_config(p)),
        ("solver.prototxt", os.path.join(REPO, "configs", "solver.prototxt"),
         lambda p: load_config(solver_path=p)),
        ("checkpoint", inputs["ckpt"], lambda p: load_model(p)),
    ]
    for name, source, loader in targets:
        run_target(tmp_path, name.replace(" ", "_"), source, loader, rng, outcomes)
    outcomes.update(fuzz_records(rng))
    outcomes.update(fuzz_lmdb_files(tmp_path, rng))
    report = format_outcomes(outcomes)
    print(report)
    crashes = [k for k in outcomes if k[2].startswith("CRASH")]
    assert not crashes, report


def _copy_others(deploy, path):
    folder = os.path.dirname(path)
    for name in os.listdir(deploy):
        if name != os.path.basename(path):
            shutil.copy(os.path.join(deploy, name), os.path.join(folder, name))


def fuzz_records(rng):
    """Damaged LMDB values through the record decoder (fast path and schema path)."""
    from food101.data.records import RecordDecoder, encode_record
    outcomes = collections.Counter()
    good = [encode_record(np.arange(3 * 5 * 4, dtype=np.uint8).reshape(3, 5, 4), 2),
            encode_record(np.linspace(-1, 1, 3 * 4 * 4, dtype=np.float32).reshape(3, 4, 4), 7)]
    for i, record in enumerate(good):
        decoder = RecordDecoder("fuzz_%d.lmdb" % i)
        decoder.decode(b"warm", record)      # the header cache makes later records take the fast path
        for kind, damaged in mutations(record, rng):
            outcome = classify(lambda: decoder.decode(b"00000001_k", damaged), "fuzz_%d.lmdb" % i)
            outcomes[("lmdb record", kind, outcome)] += 1
    return outcomes


LMDB_CHILD = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, %(repo)r)
    from food101.data.check import check_lmdb
    from food101.data.reader import LMDBReader
    from food101.data.records import RecordError
    out = []
    for path in sys.argv[1:]:
        try:
            check_lmdb(path)
            with LMDBReader(path, 4) as reader:
                for _ in reader:
                    pass
            out.append("loaded")
        except RecordError as e:
            out.append("clear error" if "data.mdb" in str(e) or "record" in str(e)
                       else "CRASH: unnamed: %%s" %% e)
        except Exception as e:
            out.append("CRASH: %%s: %%s" %% (type(e).__name__, e))
        print(json.dumps(out[-1]), flush=True)
""")


def fuzz_lmdb_files(tmp_path, rng):
    """Damaged data.mdb files, checked and read in a child process (a signal would show)."""
    from food101.data import build_lmdb
    from food101.data.synthetic import make_demo_dataset
    demo = make_demo_dataset(str(tmp_path / "lmdb_demo"), train_per_class=4, test_per_class=0,
                             max_side=48)
    good = build_lmdb(demo.root, "train", str(tmp_path / "lmdb_good"), size=24, workers=0,
                      progress=False).out
    with open(os.path.join(good, "data.mdb"), "rb") as f:
        data = f.read()
    paths, kinds = [], []
    for k, (kind, damaged) in enumerate(mutations(data, rng)):
        folder = tmp_path / ("lmdb_%d" % k)
        shutil.copytree(good, folder)
        with open(folder / "data.mdb", "wb") as f:
            f.write(damaged)
        paths.append(str(folder))
        kinds.append(kind)
    result = subprocess.run([sys.executable, "-c", LMDB_CHILD % {"repo": REPO}] + paths,
                            capture_output=True, text=True, timeout=300)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    outcomes = collections.Counter(("lmdb file", kind, outcome) for kind, outcome in zip(kinds, lines))
    if result.returncode != 0:   # the child died: the case after the last answered one
        outcomes[("lmdb file", kinds[len(lines)],
                  "CRASH: exit %d in %s: %s" % (result.returncode, paths[len(lines)],
                                                result.stderr[-500:]))] += 1
    return outcomes


def format_outcomes(outcomes):
    lines = ["%d fuzz cases" % sum(outcomes.values())]
    by_target = collections.defaultdict(collections.Counter)
    for (target, kind, outcome), n in outcomes.items():
        by_target[target][(kind, outcome)] += n
    for target in sorted(by_target):
        parts = ", ".join("%s %s: %d" % (kind, outcome, n)
                          for (kind, outcome), n in sorted(by_target[target].items()))
        lines.append("  %-22s %s" % (target, parts))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-s"]))
