"""Caffe2's protobufs: the schema (caffe2_pb2) and file / tensor helpers (serialization)."""
from food101.caffe2.proto import caffe2_pb2  # noqa: F401
from food101.caffe2.proto.serialization import (  # noqa: F401
    load_net, load_proto, numpy_to_tensor, parse_proto, save_net, save_proto, tensor_to_numpy,
)
