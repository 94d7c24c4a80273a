"""A small deploy folder without training: the stand-in zoo SqueezeNet re-headed to a few
classes, exported at a given crop, with the resize fields training adds to preprocess.json."""
import json
import os

from food101 import zoo
from food101.interop import export
from tests.support import ZOO

CLASSES = ["apple_pie", "caesar_salad", "pizza", "ramen", "sushi", "waffles"]


def standin_deploy(dest, classes=CLASSES, crop=56, resize_size=64, mean_bgr=(100.0, 110.0, 120.0)):
    model = zoo.replace_classifier(zoo.load(ZOO), len(classes), class_names=list(classes))
    export.to_caffe2(model, dest, weights=model.weights(), mean_bgr=mean_bgr, crop=crop)
    path = os.path.join(dest, "preprocess.json")
    with open(path) as f:
        info = json.load(f)
    info.update(resize_size=resize_size, resize="crop")
    with open(path, "w") as f:
        json.dump(info, f)
    return str(dest)
