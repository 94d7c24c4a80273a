#!/usr/bin/env python
"""Export a fine-tuned model as a Caffe2 deploy folder and/or an ONNX file.

    python tools/export.py --model runs/food101/deploy --out exported/            # both formats
    python tools/export.py --checkpoint runs/food101 --out exported/ --format onnx --verify
    python tools/export.py --model models/squeezenet --out sq_onnx/ --format onnx  # the zoo model

--model is a Model Zoo folder (init_net.pb, predict_net.pb, value_info.json; default: the
downloaded SqueezeNet, else the stand-in). With --checkpoint the weights come from a training
checkpoint and the model is re-headed to --num-classes. Writes <out>/{init_net.pb,
predict_net.pb, value_info.json, labels.txt, preprocess.json} and <out>/model.onnx.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from food101.caffe2.errors import Caffe2Error  # noqa: E402
from food101.interop.export import export_model  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="Model Zoo folder (default: models/squeezenet, else the stand-in)")
    p.add_argument("--checkpoint", help="training checkpoint file or folder holding the trained blobs")
    p.add_argument("--num-classes", type=int, default=None,
                   help="classes of the checkpoint's model (default: the checkpoint's class list)")
    p.add_argument("--labels", help="class names file, one per line (default: Food-101's)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", nargs="+", choices=["caffe2", "onnx"], default=["caffe2", "onnx"])
    p.add_argument("--opset", type=int, help="ONNX opset (>= 13; default 13, 15 with SpatialBN)")
    p.add_argument("--verify", action="store_true",
                   help="compare the ONNX file (onnx.reference) with this project's executor")
    return p


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    try:
        result = export_model(args.out, formats=args.format, model_dir=args.model,
                              checkpoint=args.checkpoint, num_classes=args.num_classes,
                              class_names=args.labels, opset=args.opset, verify=args.verify)
    except (Caffe2Error, OSError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    print("model:  %s" % result["note"])
    if "caffe2" in result:
        print("caffe2: %s (init_net.pb, predict_net.pb, value_info.json, labels.txt)" % result["caffe2"])
    if "onnx" in result:
        print("onnx:   %s (opset %d)" % (result["onnx"], result["onnx_opset"]))
    if "onnx_max_diff" in result:
        print("verify: ONNX reference evaluator vs executor, max |diff| = %.3g" % result["onnx_max_diff"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
