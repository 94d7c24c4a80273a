"""pytest plugin for the real-Caffe2 runs (Python 3.7): Caffe2's helper modules that EDITS
changed (listed in $CONFORMANCE_EDITED, a JSON list of module names) load from the edited
copies in $CONFORMANCE_CAFFE2_SOURCES; everything else is the installed caffe2."""
import importlib.abc
import importlib.util
import json
import os
import sys

_SOURCES = os.environ["CONFORMANCE_CAFFE2_SOURCES"]
_EDITED = set(json.loads(os.environ.get("CONFORMANCE_EDITED", "[]")))


class EditedHelpers(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _EDITED:
            return None
        location = os.path.join(_SOURCES, *fullname.split(".")) + ".py"
        return importlib.util.spec_from_file_location(fullname, location)


sys.meta_path.insert(0, EditedHelpers())
