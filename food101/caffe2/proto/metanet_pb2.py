"""caffe2.proto.metanet_pb2: MetaNetDef and its map entries (the predictor exporter's index)."""
from food101.caffe2.proto.caffe2_pb2 import (  # noqa: F401
    BlobsMap, MetaNetDef, ModelInfo, NetsMap, PlansMap, StringMap)
