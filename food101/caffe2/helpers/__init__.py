"""brew helpers, one module per family as in caffe2.python.helpers.

Each helper is a plain function `helper(model, blob_in, blob_out, ..., **kwargs)` that adds
ops to `model.net` (and parameter fills to `model.param_init_net`) and returns the output
BlobReference. Call them through `brew` (brew.conv, brew.fc, ...), which merges the model's
arg_scope and any `brew.arg_scope` defaults into their keyword arguments.
"""
