"""How parameters are described and created (caffe2.python.modeling).

`parameter_info`: ParameterTags (WEIGHT, BIAS, COMPUTED_PARAM) and ParameterInfo, the record
ModelHelper keeps per parameter (blob, shape, gradient, optimizer). `initializers`: the objects
brew helpers use to add a parameter's fill op to the param_init_net (or, for
ExternalInitializer, to expect the blob from outside, e.g. a Model Zoo init_net).
"""
