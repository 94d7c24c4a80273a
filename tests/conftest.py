"""Shared test fixtures: a clean workspace per test; CUDA tests skip without a GPU.
Helpers (paths of the reference fixtures, op runners) live in tests/support/."""
import pytest
import torch


@pytest.fixture(autouse=True)
def fresh_workspace():
    from food101.caffe2 import workspace
    workspace.ResetAll()
    yield
    workspace.ResetAll()


def pytest_collection_modifyitems(config, items):
    if "heavy" not in (config.getoption("markexpr") or ""):
        skip_heavy = pytest.mark.skip(reason="real pretrained model: run with -m heavy")
        for item in items:
            if "heavy" in item.keywords:
                item.add_marker(skip_heavy)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
