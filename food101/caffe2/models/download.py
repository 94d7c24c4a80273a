"""caffe2.python.models.download: fetch Model Zoo models, verified.

    python -m food101.caffe2.models.download squeezenet         # into ./squeezenet
    python -m food101.caffe2.models.download -i squeezenet      # "install": models/squeezenet,
                                                                # then `from food101.caffe2.models import squeezenet`
    init_net, predict_net, value_info = ModelDownloader().get_c2_model("squeezenet")

Downloads go through the project's downloader (food101.zoo.download: resumable, SHA-256 checked
against the published checksums, never a half-written file). Only models with published
checksums can be fetched (today: squeezenet); others raise an error saying so, since an
unverified model file is what this project refuses to load.
"""
import argparse
import json
import os
import shutil
import sys
import types

from food101.caffe2.proto import load_net
from food101.zoo import download as zoo_download

DOWNLOAD_BASE_URL = zoo_download.DEFAULT_BASE_URL + "/"
FILES = ("predict_net.pb", "init_net.pb")


def getURLFromName(name, filename):
    return "%s%s/%s" % (DOWNLOAD_BASE_URL, name, filename)


def validModelName(name):
    return name != "__init__" and all(c.isalnum() or c in "/_-" for c in name) and bool(name)


def deleteDirectory(top_dir):
    if os.path.isdir(top_dir):
        shutil.rmtree(top_dir)


def _fetch(model, folder, progress=True):
    return zoo_download.download_model(model, dest=folder, progress=progress)


def downloadModel(model, args):
    """What `python -m ... download [-i] [-f] model` does: into ./model, or with args.install
    into the project's models folder (where `food101.caffe2.models.<model>` finds it)."""
    if not validModelName(model):
        raise ValueError("invalid model name %r" % model)
    folder = os.path.join(zoo_download.models_dir(), model) if args.install else model
    if os.path.exists(folder) and not os.path.isdir(folder):
        if not args.force:
            raise FileExistsError("cannot create folder %r for the model: a file of that name "
                                  "exists (use -f to overwrite it)" % folder)
        os.remove(folder)
    # an existing folder is completed and re-verified, never deleted: files that check out stay
    return _fetch(model, folder)


def installed_model(name):
    """A module-like object with init_net / predict_net of the verified model `name`."""
    folder = os.path.join(zoo_download.models_dir(), name)
    try:
        checksums = zoo_download.load_checksums(name)
    except Exception:  # noqa: BLE001 - unknown model: say how to get one
        checksums = None
    paths = [os.path.join(folder, f) for f in FILES]
    problems = [p for p in paths if not os.path.exists(p)]
    if not problems and checksums:
        problems = [p for p in paths if zoo_download.verify_file(p, checksums.get(os.path.basename(p)))]
    if problems:
        raise ImportError("model %r is not installed (missing or unverified: %s); run: python -m "
                          "food101.caffe2.models.download -i %s" % (name, ", ".join(problems), name))
    module = types.ModuleType("food101.caffe2.models." + name)
    module.init_net = load_net(paths[1])
    module.predict_net = load_net(paths[0])
    return module


class ModelDownloader:
    """Caffe2's ModelDownloader: models under $CAFFE2_MODELS (or ~/.caffe2/models)/<model>."""

    def __init__(self, model_env_name="CAFFE2_MODELS"):
        self.model_env_name = model_env_name

    def _model_dir(self, model):
        home = os.path.expanduser(os.getenv("CAFFE2_HOME", "~/.caffe2"))
        return os.path.join(os.getenv(self.model_env_name, os.path.join(home, "models")), model)

    def _download(self, model):
        _fetch(model, self._model_dir(model), progress=False)

    def get_c2_model(self, model_name):
        """(init_net, predict_net, value_info) of the model, downloading it first if needed."""
        folder = self._model_dir(model_name)
        if not all(os.path.exists(os.path.join(folder, f)) for f in FILES + ("value_info.json",)):
            self._download(model_name)
        predict_net = load_net(os.path.join(folder, "predict_net.pb"))
        predict_net.name = model_name
        init_net = load_net(os.path.join(folder, "init_net.pb"))
        init_net.name = model_name + "_init"
        with open(os.path.join(folder, "value_info.json")) as fh:
            value_info = json.load(fh)
        return init_net, predict_net, value_info

    def get_c2_model_dbg(self, model_name):
        init_net, predict_net, value_info = self.get_c2_model(model_name)
        return init_net, predict_net, value_info, "get_c2_model: %s" % self._model_dir(model_name)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Download Caffe2 Model Zoo models (verified).")
    parser.add_argument("model", nargs="+", help="model names, e.g. squeezenet")
    parser.add_argument("-i", "--install", action="store_true",
                        help="install into the project's models folder (import it from food101.caffe2.models)")
    parser.add_argument("-f", "--force", action="store_true", help="overwrite a file in the way")
    args = parser.parse_args(argv)
    for model in args.model:
        try:
            downloadModel(model, args)
        except Exception as e:  # noqa: BLE001 - the CLI reports and fails
            print("Abort: %s" % e, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
