"""The import redirection for running Caffe2's own tests on food101 (pytest plugin, -p).

First on sys.meta_path:
  caffe2, caffe2.python, caffe2.proto  -> empty packages over the cached Caffe2 sources
  caffe2.proto.caffe2_pb2              -> food101.caffe2.proto.caffe2_pb2
  caffe2.python.X                      -> food101.caffe2.X when the project has that module,
                                          else Caffe2's own file from the cache, unmodified
                                          apart from the listed mechanical edits (test helpers:
                                          hypothesis_test_util, gradient_checker, ...)
The cache folder comes from $CONFORMANCE_CAFFE2_SOURCES (run.py sets it).
"""
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types

SOURCES = os.environ["CONFORMANCE_CAFFE2_SOURCES"]
_PACKAGES = {"caffe2": "caffe2", "caffe2.python": "caffe2/python", "caffe2.proto": "caffe2/proto"}


def _project_name(fullname):
    if fullname in ("caffe2.proto.caffe2_pb2", "caffe2.proto.metanet_pb2",
                    "caffe2.proto.predictor_consts_pb2"):
        return "food101.caffe2.proto." + fullname.rsplit(".", 1)[1]
    if fullname.startswith("caffe2.python."):
        return "food101.caffe2." + fullname[len("caffe2.python."):]
    return None


class _Alias(importlib.abc.Loader):
    """Makes `caffe2.python.X` the very module object food101.caffe2.X."""

    def __init__(self, target):
        self.target = target

    def create_module(self, spec):
        self.module = importlib.import_module(self.target)
        self.original_spec = self.module.__spec__
        return self.module

    def exec_module(self, module):
        module.__spec__ = self.original_spec  # the import system overwrote it with the alias's


class _EmptyPackage(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        pass


class Caffe2Redirect(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in _PACKAGES:
            spec = importlib.machinery.ModuleSpec(fullname, _EmptyPackage(), is_package=True)
            spec.submodule_search_locations = [os.path.join(SOURCES, _PACKAGES[fullname])]
            return spec
        if not fullname.startswith("caffe2."):
            return None
        project = _project_name(fullname)
        if project is not None:
            try:
                found = importlib.util.find_spec(project)
            except ModuleNotFoundError:
                found = None
            if found is not None:
                return importlib.machinery.ModuleSpec(
                    fullname, _Alias(project), is_package=found.submodule_search_locations is not None)
        # Caffe2's own file from the cache, found here rather than through the parent's path: a
        # parent package the project has (caffe2.python.predictor) searches the project's folder
        relpath = fullname.replace(".", "/")
        for candidate in (relpath + ".py", os.path.join(relpath, "__init__.py")):
            if os.path.exists(os.path.join(SOURCES, candidate)):
                return importlib.util.spec_from_file_location(fullname, os.path.join(SOURCES, candidate))
        return None


def install():
    if not any(isinstance(f, Caffe2Redirect) for f in sys.meta_path):
        sys.meta_path.insert(0, Caffe2Redirect())


install()
