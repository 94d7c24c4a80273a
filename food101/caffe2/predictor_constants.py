"""caffe2.python.predictor_constants: `predictor_constants.META_NET_DEF` and friends."""
from food101.caffe2.proto.predictor_consts_pb2 import PredictorConsts

predictor_constants = PredictorConsts()
