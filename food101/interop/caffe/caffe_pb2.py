"""BVLC Caffe's protobuf schema (caffe.proto, package ``caffe``, proto2), wire-compatible.

Message classes are built at import from `schema_table` (BVLC's field numbers, labels, types and
defaults) in a private descriptor pool, as `food101.caffe2.proto.caffe2_pb2` is, so they behave
like Caffe's generated ``caffe_pb2``::

    net = caffe_pb2.NetParameter()
    text_format.Merge(open("deploy.prototxt").read(), net)
    layer.pooling_param.pool == caffe_pb2.PoolingParameter.MAX
"""
from food101.caffe2.proto import schema
from food101.interop.caffe.schema_table import ENUMS, MESSAGES

PACKAGE = "caffe"
FILE_NAME = "food101/interop/caffe/caffe.proto"

DESCRIPTOR = schema.build(PACKAGE, FILE_NAME, MESSAGES, ENUMS)
__all__ = schema.export(globals(), DESCRIPTOR)
