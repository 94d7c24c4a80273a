"""brew.sum / brew.transpose / brew.sub / brew.mat_mul / brew.reduce_sum."""


def transpose(model, blob_in, blob_out, use_cudnn=False, **kwargs):
    if use_cudnn:
        kwargs["engine"] = "CUDNN"
    return model.net.Transpose(blob_in, blob_out, **kwargs)


def sum(model, blob_in, blob_out, **kwargs):  # noqa: A001 - Caffe2's helper name
    return model.net.Sum(blob_in, blob_out, **kwargs)


def sub(model, blob_in, blob_out, **kwargs):
    return model.net.Sub(blob_in, blob_out, **kwargs)


def mat_mul(model, blob_in, blob_out, **kwargs):
    return model.net.MatMul(blob_in, blob_out, **kwargs)


def reduce_sum(model, blob_in, blob_out, **kwargs):
    return model.net.ReduceSum(blob_in, blob_out, **kwargs)
