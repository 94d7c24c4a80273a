"""The same Caffe2-API training script on real Caffe2 and on this project: images/s and ratios.

One script body (`train_images_per_second`) builds SqueezeNet v1.1 with `brew` (101-way
classifier), LabelCrossEntropy + AveragedLoss, `AddGradientOperators` and `optimizer.build_sgd`
with momentum, feeds one random batch (16 x 3 x 128 x 128) and times `workspace.RunNet`. It
runs once importing `caffe2.python` (real Caffe2: the torch 1.4.0 wheel on Python 3.7, the
environment `tests/data/caffe2_reference/tools/setup.sh` builds) and once importing
`food101.caffe2`, each in its own process, in two scenarios:

    full    every layer trains
    frozen  StopGradient at fire9/concat: only the new conv10 trains (the fine-tuning setting)

Rounds alternate the two runtimes (and which goes first), so drift in machine load hits both;
each keeps its best round. Prints images/s and project / Caffe2 per scenario (goal >= 2.0).

    python benchmarks/vs_caffe2.py [--rounds 5] [--iters 10] [--caffe2-python /work/c2venv/bin/python]

The script body runs on Python 3.7 too (no newer syntax), since real Caffe2 needs it.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_CAFFE2_PYTHON = os.environ.get("CAFFE2_PYTHON", "/work/c2venv/bin/python")
FIRES = [("fire2", 16, 64), ("fire3", 16, 64), ("fire4", 32, 128), ("fire5", 32, 128),
         ("fire6", 48, 192), ("fire7", 48, 192), ("fire8", 64, 256), ("fire9", 64, 256)]
NUM_CLASSES = 101


def squeezenet(brew, model, data, frozen):
    """SqueezeNet v1.1 as the Model Zoo lays it out (ceil-mode pools), 101-way conv10."""
    brew.conv(model, data, "conv1", 3, 64, kernel=3, stride=2)
    brew.relu(model, "conv1", "conv1")
    prev = brew.max_pool(model, "conv1", "pool1", kernel=3, stride=2, legacy_pad=3)
    channels = 64
    for name, squeeze, expand in FIRES:
        brew.conv(model, prev, name + "/squeeze1x1", channels, squeeze, kernel=1)
        brew.relu(model, name + "/squeeze1x1", name + "/squeeze1x1")
        brew.conv(model, name + "/squeeze1x1", name + "/expand1x1", squeeze, expand, kernel=1)
        brew.relu(model, name + "/expand1x1", name + "/expand1x1")
        brew.conv(model, name + "/squeeze1x1", name + "/expand3x3", squeeze, expand, kernel=3, pad=1)
        brew.relu(model, name + "/expand3x3", name + "/expand3x3")
        prev = brew.concat(model, [name + "/expand1x1", name + "/expand3x3"], name + "/concat")
        channels = 2 * expand
        if name in ("fire3", "fire5"):
            prev = brew.max_pool(model, prev, "pool" + name[-1], kernel=3, stride=2, legacy_pad=3)
    if frozen:
        prev = model.net.StopGradient(prev, "fire9/concat_frozen")
    brew.conv(model, prev, "conv10", channels, NUM_CLASSES, kernel=1)
    brew.relu(model, "conv10", "conv10")
    brew.average_pool(model, "conv10", "pool10", global_pooling=True)
    return brew.softmax(model, "pool10", "softmaxout")


def train_images_per_second(runtime, scenario, batch, size, iters, warmup, seed=0):
    """The Caffe2 training script; `runtime` picks the import. Returns images/s."""
    import numpy as np
    if runtime == "caffe2":
        from caffe2.python import brew, core, model_helper, optimizer, workspace
        workspace.GlobalInit(["caffe2", "--caffe2_log_level=2"])
    else:
        from food101.caffe2 import brew, core, model_helper, optimizer, workspace
    np.random.seed(seed)
    model = model_helper.ModelHelper(name="squeezenet_%s" % scenario)
    probs = squeezenet(brew, model, "data", frozen=scenario == "frozen")
    xent = model.net.LabelCrossEntropy([probs, "label"], "xent")
    loss = model.net.AveragedLoss(xent, "loss")
    model.AddGradientOperators([loss])
    optimizer.build_sgd(model, base_learning_rate=0.01, policy="step", stepsize=1000, gamma=0.1,
                        momentum=0.9)
    workspace.FeedBlob("data", (np.random.rand(batch, 3, size, size) * 255 - 120).astype(np.float32))
    workspace.FeedBlob("label", np.random.randint(0, NUM_CLASSES, batch).astype(np.int32))
    workspace.RunNetOnce(model.param_init_net)
    workspace.CreateNet(model.net)
    name = model.net.Proto().name
    for _ in range(warmup):
        workspace.RunNet(name)
    start = time.perf_counter()
    for _ in range(iters):
        workspace.RunNet(name)
    elapsed = time.perf_counter() - start
    if not np.isfinite(float(workspace.FetchBlob("loss"))):
        raise RuntimeError("%s %s: the loss is not finite" % (runtime, scenario))
    core  # noqa: B018 - imported as a Caffe2 script would
    return batch * iters / elapsed


def run_worker(python, runtime, scenario, args):
    env = dict(os.environ)
    if runtime == "project":
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    else:
        env.pop("PYTHONPATH", None)  # the project's packages must not shadow the py3.7 ones
        # Caffe2 1.4's generated caffe2_pb2 predates protobuf 4's C++ parser; the pure-Python
        # one only builds the net (RunNet passes a name), so the timing is unaffected
        env["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
    command = [python, os.path.abspath(__file__), "--worker", runtime, "--scenario", scenario,
               "--batch", str(args.batch), "--size", str(args.size), "--iters", str(args.iters),
               "--warmup", str(args.warmup)]
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    if done.returncode != 0:
        sys.exit("%s run (%s) failed:\n%s" % (runtime, " ".join(command), done.stderr[-3000:]))
    return json.loads(done.stdout.strip().splitlines()[-1])["images_per_second"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--scenarios", default="full,frozen")
    parser.add_argument("--caffe2-python", default=DEFAULT_CAFFE2_PYTHON,
                        help="a Python 3.7 with the torch 1.4.0 wheel (real Caffe2)")
    parser.add_argument("--worker", choices=("caffe2", "project"), help=argparse.SUPPRESS)
    parser.add_argument("--scenario", choices=("full", "frozen"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        rate = train_images_per_second(args.worker, args.scenario, args.batch, args.size,
                                       args.iters, args.warmup)
        print(json.dumps({"images_per_second": rate}))
        return rate
    if not os.path.exists(args.caffe2_python):
        sys.exit("real Caffe2's Python (%s) does not exist: build it with "
                 "tests/data/caffe2_reference/tools/setup.sh or pass --caffe2-python"
                 % args.caffe2_python)
    pythons = {"caffe2": args.caffe2_python, "project": sys.executable}
    scenarios = args.scenarios.split(",")
    best = {}
    for round_index in range(args.rounds):
        order = ("caffe2", "project") if round_index % 2 == 0 else ("project", "caffe2")
        for scenario in scenarios:
            for runtime in order:
                rate = run_worker(pythons[runtime], runtime, scenario, args)
                best[scenario, runtime] = max(best.get((scenario, runtime), 0.0), rate)
                print("round %d  %-6s %-8s %7.1f images/s" % (round_index + 1, scenario, runtime,
                                                             rate), flush=True)
    print()
    print("SqueezeNet training, 101 classes, SGD momentum, CPU, batch %d at %dx%d, best of %d "
          "alternating rounds" % (args.batch, args.size, args.size, args.rounds))
    ratios = {}
    for scenario in scenarios:
        ratios[scenario] = best[scenario, "project"] / best[scenario, "caffe2"]
        print("  %-6s  real Caffe2 %7.1f images/s   project %7.1f images/s   ratio %.2f (goal >= 2.0)"
              % (scenario, best[scenario, "caffe2"], best[scenario, "project"], ratios[scenario]))
    return ratios


if __name__ == "__main__":
    main()
