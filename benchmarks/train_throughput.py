"""Training throughput of SqueezeNet: this project's compiled and eager modes vs. hand-written torch.

One run, one process, the same zoo weights and batches for every contender:

  (a) frozen   fine-tuning: zoo backbone frozen (StopGradient at fire9/concat), new 101-way conv10
  (b) full     training: every layer trained
  contenders   compiled  workspace.CreateNet(compile=CompileOptions(channels_last, bf16, inductor))
               eager     workspace.CreateNet() (the op-by-op interpreter, fp32)
               module    a hand-written nn.Module SqueezeNet, torch.compile'd, the same memory
                         order and autocast, torch.optim.SGD (Nesterov momentum, weight decay)
  settings     --bf16/--channels-last auto: on CUDA; on a CPU only where it has native bf16
               (AVX512-BF16/AMX) or AVX512 (NHWC convolutions); otherwise fp32 NCHW
  pipeline     LMDB reader + GPU crop/mirror/mean alone, and end-to-end LMDB -> compiled training

Prints images/s and the ratios compiled/module, compiled/eager and end-to-end/model-only.

    python benchmarks/train_throughput.py                       # CUDA, batch 256 at 227x227
    python benchmarks/train_throughput.py --device cpu --batch 16 --size 128   # the CPU figure
    python benchmarks/train_throughput.py --device cpu --batch 4 --size 67 --iters 2   # smoke run
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from squeezenet_module import SqueezeNet, label_cross_entropy  # noqa: E402

from food101 import zoo  # noqa: E402
from food101.caffe2 import core, optimizer, workspace  # noqa: E402
from food101.caffe2.compiled import CompileOptions, cpu_accelerates  # noqa: E402
from food101.data import augment  # noqa: E402
from food101.data.reader import LMDBReader  # noqa: E402
from food101.data.records import encode_record  # noqa: E402

NUM_CLASSES = 101


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(step, batch, iters, warmup, device):
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    sync(device)
    return batch * iters / (time.perf_counter() - start)


# ---------------------------------------------------------------- this project's nets
def build_project_net(food, scenario, device_option):
    with core.DeviceScope(device_option):
        kwargs = dict(unfreeze_from="conv1") if scenario == "full" else {}
        model = zoo.build_finetune_model(food, input_kind="float", top5=False,
                                         name="bench_%s" % scenario, **kwargs)
        zoo.build_finetune_sgd(model, 0.01, weight_decay=5e-4, policy="step", stepsize=10000,
                               gamma=0.1, momentum=0.9)
    return model


def project_step(food, scenario, device, data, labels, compile_options):
    """A RunNet closure for the project's net, created once in a fresh workspace."""
    option = core.DeviceOption(1 if device.type == "cuda" else 0, device.index or 0)
    name = "%s-%s" % (scenario, "compiled" if compile_options else "eager")
    workspace.SwitchWorkspace(name, create_if_missing=True)
    model = build_project_net(food, scenario, option)
    workspace.RunNetOnce(model.param_init_net)
    workspace.FeedTensor("data", data)
    workspace.FeedTensor("label", labels)
    workspace.CreateNet(model.net, compile=compile_options)
    net_name = model.net.Proto().name
    return lambda: workspace.RunNet(net_name)


# ---------------------------------------------------------------- the hand-written baseline
def module_step(weights, scenario, device, data, labels, compiled=True, bf16=True,
                channels_last=True, backend="inductor"):
    trainable = None if scenario == "full" else {"conv10_w", "conv10_b"}
    module = SqueezeNet(weights, trainable=trainable).to(device)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    params = [p for p in module.parameters() if p.requires_grad]
    decay = [p for n, p in module.named_parameters() if p.requires_grad and n.endswith("_w")]
    other = [p for n, p in module.named_parameters() if p.requires_grad and not n.endswith("_w")]
    opt = torch.optim.SGD([dict(params=decay, weight_decay=5e-4), dict(params=other, weight_decay=0.0)],
                          lr=0.01, momentum=0.9, nesterov=True)
    autocast_device = device.type

    def forward_loss(x, y):
        with torch.autocast(autocast_device, dtype=torch.bfloat16, enabled=bf16):
            probs = module(x)
        return label_cross_entropy(probs.float(), y)

    loss_fn = torch.compile(forward_loss, backend=backend) if compiled else forward_loss
    x = data.contiguous(memory_format=torch.channels_last) if channels_last else data

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(x, labels).backward()
        opt.step()

    del params
    return step


# ---------------------------------------------------------------- input pipeline
def synthetic_lmdb(path, count, size, seed=0):
    """An LMDB of `count` random 3 x size x size uint8 records in the project's format."""
    import lmdb
    rng = np.random.RandomState(seed)
    env = lmdb.open(path, map_size=count * (3 * size * size + 1024) * 2)
    with env.begin(write=True) as txn:
        for i in range(count):
            image = rng.randint(0, 256, (3, size, size), dtype=np.uint8)
            txn.put(b"%08d" % i, encode_record(image, int(rng.randint(NUM_CLASSES))))
    env.close()
    return path


def pipeline_batches(reader, device, crop, channels_last=True):
    aug = augment.Augment(crop, train=True, device=device, channels_last=channels_last,
                          generator=torch.Generator(device=device).manual_seed(0))
    iterator = iter(reader)

    def next_batch():
        nonlocal iterator
        try:
            images, labels = next(iterator)
        except StopIteration:
            iterator = iter(reader)
            images, labels = next(iterator)
        x = aug(images)
        y = torch.as_tensor(labels).to(device, non_blocking=True)
        return x, y

    return next_batch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=227, help="crop size")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--records", type=int, default=2048, help="synthetic LMDB size")
    parser.add_argument("--lmdb", help="an existing LMDB instead of a synthetic one")
    parser.add_argument("--reader-threads", type=int, default=4)
    parser.add_argument("--cudagraphs", action="store_true", help="compile with mode=reduce-overhead")
    parser.add_argument("--skip-eager", action="store_true")
    parser.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                        help="bf16 autocast (auto: on CUDA, or on a CPU with native bf16)")
    parser.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto",
                        help="NHWC memory order (auto: on CUDA, or on an AVX512 CPU)")
    parser.add_argument("--scenarios", default="frozen,full")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--backend", default="inductor",
                        help="torch.compile backend (aot_eager: a quick check without codegen)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA GPU is available here; use --device cpu for a smoke run")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        print("GPU:", torch.cuda.get_device_name(device))
    on_cuda = device.type == "cuda"
    bf16 = {"on": True, "off": False}.get(args.bf16, on_cuda or cpu_accelerates("bfloat16"))
    channels_last = {"on": True, "off": False}.get(
        args.channels_last, on_cuda or cpu_accelerates("channels_last"))
    print("settings: %s, %s, %s, batch %d at %dx%d" % (
        device, "bf16 autocast" if bf16 else "fp32", "channels_last" if channels_last else "NCHW",
        args.batch, args.size, args.size), flush=True)
    options = CompileOptions(backend=args.backend, channels_last=channels_last,
                             autocast="bfloat16" if bf16 else None,
                             mode="reduce-overhead" if args.cudagraphs else None, keep_all_blobs=False)
    module_settings = dict(bf16=bf16, channels_last=channels_last, backend=args.backend)

    location = zoo.locate_squeezenet()
    food = zoo.replace_classifier(location.load(), NUM_CLASSES)
    rng = np.random.RandomState(0)
    data = torch.from_numpy((rng.rand(args.batch, 3, args.size, args.size) * 255 - 120)
                            .astype(np.float32)).to(device)
    labels = torch.from_numpy(rng.randint(0, NUM_CLASSES, args.batch).astype(np.int32)).to(device)
    workspace.SwitchWorkspace("weights", create_if_missing=True)
    workspace.RunNetOnce(food.init_net)
    weights = {p: torch.from_numpy(workspace.FetchBlob(p)) for p in food.param_shapes}

    results = {}
    bench = dict(batch=args.batch, iters=args.iters, warmup=args.warmup, device=device)
    scenarios = args.scenarios.split(",")
    for scenario in scenarios:
        results[scenario, "module"] = images_per_second(
            module_step(weights, scenario, device, data, labels, **module_settings), **bench)
        results[scenario, "compiled"] = images_per_second(
            project_step(food, scenario, device, data, labels, options), **bench)
        if not args.skip_eager:
            results[scenario, "eager"] = images_per_second(
                project_step(food, scenario, device, data, labels, None), **bench)
        for contender in ("compiled", "eager", "module"):
            if (scenario, contender) in results:
                print("%-6s %-9s %10.1f images/s" % (scenario, contender, results[scenario, contender]),
                      flush=True)

    if not args.skip_pipeline:
        results.update(pipeline_rates(args, device, food, data, labels, options, bench))
    print()
    figures = {"device": str(device), "batch": args.batch, "size": args.size,
               "bf16": bf16, "channels_last": channels_last}
    for scenario in scenarios:
        for contender in ("compiled", "eager", "module"):
            if (scenario, contender) in results:
                figures["%s_%s_images_per_second" % (scenario, contender)] = results[scenario, contender]
        figures["%s_compiled_over_module" % scenario] = (
            results[scenario, "compiled"] / results[scenario, "module"])
        line = "%s: compiled / hand-written module = %.2f" % (
            scenario, figures["%s_compiled_over_module" % scenario])
        if (scenario, "eager") in results:
            figures["%s_compiled_over_eager" % scenario] = (
                results[scenario, "compiled"] / results[scenario, "eager"])
            line += ", compiled / eager = %.2f" % figures["%s_compiled_over_eager" % scenario]
        print(line)
    if "end_to_end" in results and ("frozen", "compiled") in results:
        figures["pipeline_images_per_second"] = results["pipeline"]
        figures["end_to_end_images_per_second"] = results["end_to_end"]
        figures["end_to_end_over_model_only"] = results["end_to_end"] / results["frozen", "compiled"]
        print("end-to-end / model-only (frozen, compiled) = %.2f" % figures["end_to_end_over_model_only"])
    if ("full", "compiled") in results:
        print("full training, compiled: %.0f images/s" % results["full", "compiled"])
    if device.type == "cuda":
        figures["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
        print("peak GPU memory: %.2f GiB" % (figures["peak_memory_bytes"] / 2 ** 30))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=1)
    return figures


def pipeline_rates(args, device, food, data, labels, options, bench):
    """LMDB reader + augmentation alone, and end-to-end LMDB -> compiled frozen training."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = args.lmdb or synthetic_lmdb(os.path.join(tmp, "bench.lmdb"), args.records,
                                           max(256, args.size + 1))
        reader = LMDBReader(path, args.batch, shuffle=True, drop_last=True, prefetch=8,
                            num_threads=args.reader_threads, pin_memory=device.type == "cuda")
        next_batch = pipeline_batches(reader, device, args.size, bool(options.channels_last))
        results["pipeline"] = images_per_second(lambda: next_batch(), **bench)
        step = project_step(food, "frozen", device, data, labels, options)

        def end_to_end():
            x, y = next_batch()
            workspace.FeedTensor("data", x)
            workspace.FeedTensor("label", y)
            step()

        results["end_to_end"] = images_per_second(end_to_end, **bench)
        reader.close()
    print("pipeline  LMDB+augment        %10.1f images/s" % results["pipeline"])
    print("frozen    end-to-end from LMDB %10.1f images/s" % results["end_to_end"])
    return results


if __name__ == "__main__":
    main()
