"""brew.conv (and conv_nd, conv_transpose, group_conv): Conv ops and their `_w`/`_b` params."""
from food101.caffe2.modeling import initializers
from food101.caffe2.modeling.parameter_info import ParameterTags


def _conv_base(model, is_nd, blob_in, blob_out, dim_in, dim_out, kernel, weight_init=None,
               bias_init=None, WeightInitializer=None, BiasInitializer=None, group=1,
               transform_inputs=None, use_cudnn=False, order="NCHW",
               cudnn_exhaustive_search=False, ws_nbytes_limit=None, float16_compute=False,
               **kwargs):
    if is_nd:
        kernels = kernel if isinstance(kernel, list) else [kernel]
    elif isinstance(kernel, list):
        if len(kernel) != 2:
            raise ValueError("brew.conv takes a 2-D kernel, got %r (use conv_nd)" % (kernel,))
        kernels = kernel
    else:
        kernels = [kernel] * 2

    requested_engine = kwargs.get("engine")
    if requested_engine is not None:
        if use_cudnn and requested_engine != "CUDNN":
            raise ValueError("with use_cudnn=True the only engine allowed is 'CUDNN'")
        if not use_cudnn and requested_engine == "CUDNN":
            raise ValueError("with use_cudnn=False the engine cannot be 'CUDNN'")
    if use_cudnn:
        kwargs["engine"] = "CUDNN"
        kwargs["exhaustive_search"] = cudnn_exhaustive_search
        if ws_nbytes_limit:
            kwargs["ws_nbytes_limit"] = ws_nbytes_limit

    use_bias = not kwargs.get("no_bias", False)
    blob_out = blob_out or model.net.NextName()
    weight_shape = [dim_out]
    if order == "NCHW":
        weight_shape.append(int(dim_in / group))
        weight_shape.extend(kernels)
    else:
        weight_shape.extend(kernels)
        weight_shape.append(int(dim_in / group))

    if model.init_params:
        WeightInitializer = initializers.update_initializer(
            WeightInitializer, weight_init, ("XavierFill", {}))
        BiasInitializer = initializers.update_initializer(
            BiasInitializer, bias_init, ("ConstantFill", {}))
    else:
        WeightInitializer = initializers.ExternalInitializer()
        BiasInitializer = initializers.ExternalInitializer()

    weight = model.create_param(param_name=blob_out + "_w", shape=weight_shape,
                                initializer=WeightInitializer, tags=ParameterTags.WEIGHT)
    inputs = [blob_in, weight]
    if use_bias:
        inputs.append(model.create_param(param_name=blob_out + "_b", shape=[dim_out],
                                         initializer=BiasInitializer, tags=ParameterTags.BIAS))
    if transform_inputs is not None:
        transform_inputs(model, blob_out, inputs)
    if float16_compute:
        kwargs["float16_compute"] = True
    kwargs.pop("no_bias", None)  # the op infers it from the number of inputs
    if group != 1:
        kwargs["group"] = group
    if is_nd:
        return model.net.Conv(inputs, blob_out, kernels=kernels, order=order, **kwargs)
    if isinstance(kernel, list):
        return model.net.Conv(inputs, blob_out, kernel_h=kernel[0], kernel_w=kernel[1],
                              order=order, **kwargs)
    return model.net.Conv(inputs, blob_out, kernel=kernel, order=order, **kwargs)


def conv_nd(model, blob_in, blob_out, dim_in, dim_out, kernel, weight_init=None, bias_init=None,
            WeightInitializer=None, BiasInitializer=None, group=1, transform_inputs=None,
            order="NCHW", **kwargs):
    """N-d convolution; `kernel` is a list with one size per spatial dimension."""
    return _conv_base(model, True, blob_in, blob_out, dim_in, dim_out, kernel, weight_init,
                      bias_init, WeightInitializer, BiasInitializer, group, transform_inputs,
                      order=order, **kwargs)


def conv(model, blob_in, blob_out, dim_in, dim_out, kernel, weight_init=None, bias_init=None,
         WeightInitializer=None, BiasInitializer=None, group=1, transform_inputs=None, **kwargs):
    """2-D convolution `blob_out = Conv(blob_in, <blob_out>_w, <blob_out>_b)`.

    The weight is [dim_out, dim_in/group, k, k] (NCHW), XavierFill by default; the bias
    [dim_out], ConstantFill 0 by default; no_bias=True leaves the bias out."""
    return _conv_base(model, False, blob_in, blob_out, dim_in, dim_out, kernel, weight_init,
                      bias_init, WeightInitializer, BiasInitializer, group, transform_inputs,
                      **kwargs)


def conv_transpose(model, blob_in, blob_out, dim_in, dim_out, kernel, weight_init=None,
                   bias_init=None, use_cudnn=False, order="NCHW",
                   cudnn_exhaustive_search=False, ws_nbytes_limit=None, **kwargs):
    """ConvTranspose with a [dim_in, dim_out, k, k] weight (NCHW)."""
    weight_init = weight_init if weight_init else ("XavierFill", {})
    bias_init = bias_init if bias_init else ("ConstantFill", {})
    blob_out = blob_out or model.net.NextName()
    weight_shape = ([dim_in, dim_out, kernel, kernel] if order == "NCHW"
                    else [dim_in, kernel, kernel, dim_out])
    if model.init_params:
        weight_initializer = initializers.Initializer(weight_init[0], **weight_init[1])
        bias_initializer = initializers.Initializer(bias_init[0], **bias_init[1])
    else:
        weight_initializer = bias_initializer = initializers.ExternalInitializer()
    weight = model.create_param(param_name=blob_out + "_w", shape=weight_shape,
                                initializer=weight_initializer, tags=ParameterTags.WEIGHT)
    bias = model.create_param(param_name=blob_out + "_b", shape=[dim_out],
                              initializer=bias_initializer, tags=ParameterTags.BIAS)
    if use_cudnn:
        kwargs["engine"] = "CUDNN"
        kwargs["exhaustive_search"] = cudnn_exhaustive_search
        if ws_nbytes_limit:
            kwargs["ws_nbytes_limit"] = ws_nbytes_limit
    return model.net.ConvTranspose([blob_in, weight, bias], blob_out, kernel=kernel,
                                   order=order, **kwargs)


def group_conv(model, blob_in, blob_out, dim_in, dim_out, kernel, weight_init=None,
               bias_init=None, group=1, **kwargs):
    """Grouped convolution (the same as conv(..., group=group))."""
    return conv(model, blob_in, blob_out, dim_in, dim_out, kernel, weight_init=weight_init,
                bias_init=bias_init, group=group, **kwargs)
