"""brew.relu / brew.tanh / brew.prelu."""
from food101.caffe2.modeling import initializers
from food101.caffe2.modeling.parameter_info import ParameterTags


def relu(model, blob_in, blob_out, use_cudnn=False, order="NCHW", **kwargs):
    """Relu (in place when blob_in == blob_out)."""
    if use_cudnn:
        kwargs["engine"] = "CUDNN"
    return model.net.Relu(blob_in, blob_out, order=order, **kwargs)


def tanh(model, blob_in, blob_out, use_cudnn=False, order="NCHW", **kwargs):
    if use_cudnn:
        kwargs["engine"] = "CUDNN"
    return model.net.Tanh(blob_in, blob_out, order=order, **kwargs)


def prelu(model, blob_in, blob_out, num_channels=1, slope_init=None, **kwargs):
    """PRelu with a learned slope `<blob_out>_slope` ([num_channels], ConstantFill 0.25)."""
    slope_init = slope_init if slope_init else ("ConstantFill", {"value": 0.25})
    if model.init_params:
        initializer = initializers.Initializer(slope_init[0], **slope_init[1])
    else:
        initializer = initializers.ExternalInitializer()
    slope = model.create_param(param_name=blob_out + "_slope", shape=[num_channels],
                               initializer=initializer, tags=ParameterTags.WEIGHT)
    return model.net.PRelu([blob_in, slope], [blob_out])
