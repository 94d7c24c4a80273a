"""caffe2.python.models: model builders (resnet) and downloaded Model Zoo models.

    from food101.caffe2.models import resnet           # builders, as in Caffe2
    from food101.caffe2.models import squeezenet       # after: python -m food101.caffe2.models.download -i squeezenet
    workspace.RunNetOnce(squeezenet.init_net); workspace.CreateNet(squeezenet.predict_net)

Caffe2's `download -i` installed a model as a package next to this one; here an installed
model is a verified download in the project's models folder (food101.zoo.download), and
`models.<name>` gives its `init_net` and `predict_net`. A model that was not downloaded is an
ImportError that says how to get it.
"""
import importlib
import importlib.util

from food101.caffe2.models import download as _download


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    if importlib.util.find_spec("%s.%s" % (__name__, name)) is not None:   # resnet, download
        return importlib.import_module("%s.%s" % (__name__, name))
    return _download.installed_model(name)
