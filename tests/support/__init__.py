"""Helpers shared by the test packages: where the repository, the tools and the real-Caffe2
reference fixtures are (`tests/data/caffe2_reference/`, written by real Caffe2)."""
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(REPO, "tools")
REFERENCE = os.path.join(REPO, "tests", "data", "caffe2_reference")
ZOO = os.path.join(REFERENCE, "zoo", "squeezenet")


def reference_path(*parts):
    return os.path.join(REFERENCE, *parts)


def real_caffe2_python():
    """The Python of a real-Caffe2 environment (tools/setup.sh), or None: tests that run real
    Caffe2 live skip without it. $FOOD101_CAFFE2_PYTHON overrides the default location."""
    candidate = os.environ.get("FOOD101_CAFFE2_PYTHON", "/work/c2venv/bin/python")
    return candidate if os.path.exists(candidate) else None
