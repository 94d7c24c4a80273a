"""Caffe2 operators on torch tensors, one module per op family (see registry.py)."""
from food101.caffe2.ops.registry import ALL, operator, lookup, registered_types  # noqa: F401
