"""caffe2.proto.predictor_consts_pb2: the blob and net names of predictor_exporter DBs."""
from food101.caffe2.proto.caffe2_pb2 import PredictorConsts  # noqa: F401
