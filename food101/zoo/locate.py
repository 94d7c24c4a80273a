"""Find the SqueezeNet to fine-tune: the real zoo files when present and verified, else the stand-in.

    models/squeezenet/          the real Caffe2 Model Zoo files (tools/download_model.py squeezenet)
    models/squeezenet_standin/  seeded weights with the zoo's topology, made by real Caffe2;
                                NOT pretrained: results with them only show that the pipeline runs
"""
import os

from food101.zoo.download import load_checksums, models_dir, verify_file
from food101.zoo.model import INIT_NET, PREDICT_NETS, VALUE_INFO, load


class ZooLocation:
    """Where the model lives, and whether it is the stand-in (`is_standin`) and why (`note`)."""

    def __init__(self, folder, is_standin, note):
        self.folder = folder
        self.is_standin = is_standin
        self.note = note

    def load(self, **kwargs):
        model = load(self.folder, **kwargs)
        model.is_standin = self.is_standin
        return model

    def __fspath__(self):
        return self.folder

    def __repr__(self):
        return "<ZooLocation %s%s: %s>" % (self.folder, " (stand-in)" if self.is_standin else "",
                                           self.note)


def locate_squeezenet(root=None, verify=True):
    """The real SqueezeNet folder if its files are present and match the published SHA-256;
    otherwise the stand-in folder with is_standin=True and a note saying what was missing."""
    root = os.fspath(root or models_dir())
    real = os.path.join(root, "squeezenet")
    problems = []
    checksums = load_checksums("squeezenet", os.path.join(real, "checksums.json"))
    for filename, expected in checksums.items():
        path = os.path.join(real, filename)
        if not os.path.exists(path):
            problems.append("%s is missing" % filename)
        elif verify:
            problem = verify_file(path, expected)
            if problem:
                problems.append(problem)
    if not problems:
        return ZooLocation(real, False, "Caffe2 Model Zoo SqueezeNet (pretrained, verified)")
    standin = os.path.join(root, "squeezenet_standin")
    needed = [INIT_NET, VALUE_INFO]
    if not all(os.path.exists(os.path.join(standin, f)) for f in needed) or not any(
            os.path.exists(os.path.join(standin, f)) for f in PREDICT_NETS):
        from food101.zoo.model import ZooFileMissingError
        raise ZooFileMissingError(
            "no usable SqueezeNet: %s (%s) and the stand-in folder %s is incomplete; run "
            "tools/download_model.py squeezenet" % (real, "; ".join(problems), standin))
    return ZooLocation(standin, True, "STAND-IN weights (seeded, not pretrained) because %s; run "
                       "tools/download_model.py squeezenet for the real ones" % "; ".join(problems))
