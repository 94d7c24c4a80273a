"""brew.iter / brew.accuracy / brew.add_weight_decay: the training bookkeeping helpers."""
from food101.caffe2 import core, scope
from food101.caffe2.proto import caffe2_pb2


def iter(model, blob_out, **kwargs):  # noqa: A001 - Caffe2's helper name
    """An int64 iteration counter: ConstantFill 0 (on CPU) in param_init_net, Iter in net."""
    kwargs.pop("device_option", None)
    model.param_init_net.ConstantFill([], blob_out, shape=[1], value=0,
                                      dtype=core.DataType.INT64,
                                      device_option=core.DeviceOption(caffe2_pb2.CPU, 0), **kwargs)
    return model.net.Iter(blob_out, blob_out, **kwargs)


def accuracy(model, blob_in, blob_out, **kwargs):
    """Accuracy of predictions blob_in[0] against labels blob_in[1].

    Like Caffe2 the op gets no other arguments (the model's arg_scope is not passed on), but
    top_k > 1 is honoured on every device: real Caffe2 dropped it on CPU and computed top-1,
    a silent mislabeling of "top-5" metrics not worth reproducing."""
    top_k = kwargs.get("top_k", 1)
    if top_k > 1:
        return model.net.Accuracy(blob_in, blob_out, top_k=top_k,
                                  device_option=kwargs.get("device_option"))
    return model.net.Accuracy(blob_in, blob_out, device_option=kwargs.get("device_option"))


def _get_weights(model, namescope=None):
    if namescope is None:
        namescope = scope.CurrentNameScope()
    if namescope == "":
        return model.weights[:]
    return [w for w in model.weights if w.GetNameScope() == namescope]


def add_weight_decay(model, weight_decay):
    """grad += weight_decay * param for every WEIGHT param (the old brew form; the optimizer
    module's add_weight_decay is what Caffe2's own examples use)."""
    if weight_decay <= 0.0:
        return
    wd = model.param_init_net.ConstantFill([], "wd", shape=[1], value=weight_decay)
    one = model.param_init_net.ConstantFill([], "ONE", shape=[1], value=1.0)
    for param in _get_weights(model):
        grad = model.param_to_grad[param]
        model.net.WeightedSum([grad, one, param, wd], grad)
