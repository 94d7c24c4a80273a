"""brew.spatial_bn / brew.lrn / brew.softmax."""
from food101.caffe2 import scope
from food101.caffe2.modeling import initializers
from food101.caffe2.modeling.parameter_info import ParameterTags
from food101.caffe2.proto import caffe2_pb2


def lrn(model, blob_in, blob_out, order="NCHW", use_cudnn=False, **kwargs):
    """LRN; on CPU its scale output goes to `_<blob_out>_scale`."""
    dev = kwargs["device_option"] if "device_option" in kwargs else scope.CurrentDeviceScope()
    is_cpu = dev is None or dev.device_type == caffe2_pb2.CPU
    if use_cudnn and not is_cpu:
        kwargs["engine"] = "CUDNN"
        blobs_out = blob_out
    else:
        blobs_out = [blob_out, "_" + blob_out + "_scale"]
    out = model.net.LRN(blob_in, blobs_out, order=order, **kwargs)
    return out if use_cudnn and not is_cpu else out[0]


def softmax(model, blob_in, blob_out=None, use_cudnn=False, **kwargs):
    if use_cudnn:
        kwargs["engine"] = "CUDNN"
    if blob_out is not None:
        return model.net.Softmax(blob_in, blob_out, **kwargs)
    return model.net.Softmax(blob_in, **kwargs)


def spatial_bn(model, blob_in, blob_out, dim_in, init_scale=1., init_bias=0.,
               ScaleInitializer=None, BiasInitializer=None, RunningMeanInitializer=None,
               RunningVarianceInitializer=None, order="NCHW", **kwargs):
    """SpatialBN with params `_s` (scale, WEIGHT, 1), `_b` (bias, BIAS, 0) and computed params
    `_rm` (running mean, 0) and `_riv` (running inverse variance, 1).

    In training mode (is_test absent or 0) the op also writes the running statistics (in
    place) and the saved batch statistics `_sm`, `_siv`; is_test=1 writes only the output."""
    blob_out = blob_out or model.net.NextName()
    if model.init_params:
        ScaleInitializer = initializers.update_initializer(
            ScaleInitializer, ("ConstantFill", {"value": init_scale}), ("ConstantFill", {}))
        BiasInitializer = initializers.update_initializer(
            BiasInitializer, ("ConstantFill", {"value": init_bias}), ("ConstantFill", {}))
        RunningMeanInitializer = initializers.update_initializer(
            RunningMeanInitializer, ("ConstantFill", {"value": 0.0}), ("ConstantFill", {}))
        RunningVarianceInitializer = initializers.update_initializer(
            RunningVarianceInitializer, ("ConstantFill", {"value": 1.0}), ("ConstantFill", {}))
    else:
        ScaleInitializer = BiasInitializer = initializers.ExternalInitializer()
        RunningMeanInitializer = RunningVarianceInitializer = initializers.ExternalInitializer()

    scale = model.create_param(param_name=blob_out + "_s", shape=[dim_in],
                               initializer=ScaleInitializer, tags=ParameterTags.WEIGHT)
    bias = model.create_param(param_name=blob_out + "_b", shape=[dim_in],
                              initializer=BiasInitializer, tags=ParameterTags.BIAS)
    running_mean = model.create_param(param_name=blob_out + "_rm", shape=[dim_in],
                                      initializer=RunningMeanInitializer,
                                      tags=ParameterTags.COMPUTED_PARAM)
    running_inv_var = model.create_param(param_name=blob_out + "_riv", shape=[dim_in],
                                         initializer=RunningVarianceInitializer,
                                         tags=ParameterTags.COMPUTED_PARAM)
    inputs = [blob_in, scale, bias, running_mean, running_inv_var]
    if kwargs.get("is_test"):
        return model.net.SpatialBN(inputs, [blob_out], order=order, **kwargs)
    outputs = [blob_out, running_mean, running_inv_var, blob_out + "_sm", blob_out + "_siv"]
    return model.net.SpatialBN(inputs, outputs, order=order, **kwargs)[0]
