"""Shared test fixtures: the Caffe2 reference data and a clean workspace per test."""
import os

import pytest
import torch

REFERENCE = os.path.join(os.path.dirname(__file__), "data", "caffe2_reference")


def reference_path(*parts):
    return os.path.join(REFERENCE, *parts)


@pytest.fixture(autouse=True)
def fresh_workspace():
    from food101.caffe2 import workspace
    workspace.ResetAll()
    yield
    workspace.ResetAll()


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
