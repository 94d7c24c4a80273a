"""brew.concat: Concat with its split sizes in `_<blob_out>_concat_dims`."""


def concat(model, blobs_in, blob_out, **kwargs):
    if kwargs.get("order") and kwargs.get("axis"):
        kwargs.pop("order")  # the op refuses both; axis is the more specific
    return model.net.Concat(blobs_in, [blob_out, "_" + blob_out + "_concat_dims"], **kwargs)[0]


def depth_concat(model, blobs_in, blob_out, **kwargs):
    """The old name of concat."""
    return concat(model, blobs_in, blob_out, **kwargs)
