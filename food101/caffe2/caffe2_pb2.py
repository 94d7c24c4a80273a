"""``from food101.caffe2 import caffe2_pb2``: the schema of food101/caffe2/proto (same classes)."""
from food101.caffe2.proto.caffe2_pb2 import *  # noqa: F401,F403
from food101.caffe2.proto.caffe2_pb2 import __all__  # noqa: F401
