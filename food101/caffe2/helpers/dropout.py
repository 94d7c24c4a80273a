"""brew.dropout: Dropout with its mask in `_<blob_out>_mask`; is_test is required."""


def dropout(model, blob_in, blob_out, use_cudnn=False, **kwargs):
    kwargs["engine"] = "CUDNN" if use_cudnn else "DEFAULT"
    if "is_test" not in kwargs:
        raise ValueError("brew.dropout needs is_test (1 for inference, 0 for training)")
    return model.net.Dropout(blob_in, [blob_out, "_" + blob_out + "_mask"], **kwargs)[0]
