"""brew.max_pool / brew.average_pool."""


def max_pool(model, blob_in, blob_out, use_cudnn=False, order="NCHW", **kwargs):
    """MaxPool (kernel, stride, pad, legacy_pad, global_pooling... as op arguments)."""
    if use_cudnn:
        kwargs["engine"] = "CUDNN"
    return model.net.MaxPool(blob_in, blob_out, order=order, **kwargs)


def average_pool(model, blob_in, blob_out, use_cudnn=False, order="NCHW", **kwargs):
    """AveragePool (kernel, stride, pad, legacy_pad, global_pooling... as op arguments)."""
    if use_cudnn:
        kwargs["engine"] = "CUDNN"
    return model.net.AveragePool(blob_in, blob_out, order=order, **kwargs)


def max_pool_with_index(model, blob_in, blob_out, order="NCHW", **kwargs):
    """MaxPoolWithIndex; the argmax goes to `<blob_out>_index`."""
    return model.net.MaxPoolWithIndex(blob_in, [blob_out, blob_out + "_index"], order=order,
                                      **kwargs)[0]
