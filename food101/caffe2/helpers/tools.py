"""brew.image_input (and video_input): the ImageInput op with Caffe2's NCHW handling.

ImageInput gives NHWC on its CPU path; with order="NCHW" the helper appends NHWC2NCHW (to
`<data>_nhwc` -> `<data>`), unless use_gpu_transform, whose output is already NCHW."""


def image_input(model, blob_in, blob_out, order="NCHW", use_gpu_transform=False, **kwargs):
    if "is_test" not in kwargs:
        raise TypeError("brew.image_input: the argument is_test is required (1 for test nets: "
                        "centre crop, no mirror)")
    if order == "NCHW" and use_gpu_transform:
        kwargs["use_gpu_transform"] = 1
        return model.net.ImageInput(blob_in, blob_out, **kwargs)
    if order == "NCHW":
        outputs = list(model.net.ImageInput(blob_in, [blob_out[0] + "_nhwc"] + list(blob_out[1:]),
                                            **kwargs))
        outputs[0] = model.net.NHWC2NCHW(outputs[0], blob_out[0])
        return tuple(outputs)
    return model.net.ImageInput(blob_in, blob_out, **kwargs)


def video_input(model, blob_in, blob_out, **kwargs):
    return model.net.VideoInput(blob_in, blob_out, **kwargs)   # not registered: a clear error
