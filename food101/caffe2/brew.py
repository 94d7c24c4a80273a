"""brew: layer helpers that add ops and their parameters to a ModelHelper (caffe2.python.brew).

    brew.conv(model, "data", "conv1", dim_in=3, dim_out=64, kernel=3, stride=2)
    brew.relu(model, "conv1", "conv1")
    brew.max_pool(model, "conv1", "pool1", kernel=3, stride=2)
    brew.fc(model, "pool1", "fc1", dim_in=64 * 6 * 6, dim_out=101)

Every call goes through one wrapper that builds the helper's keyword arguments as Caffe2 does:

    model.arg_scope  (order="NCHW", use_cudnn=True, cudnn_exhaustive_search=False + the model's)
      < brew.arg_scope([...], **defaults) blocks
      < the call's own keyword arguments

A helper without **kwargs only receives the arg_scope keys it names. The helpers live in
food101/caffe2/helpers/ (one module per family); `brew.Register(fn)` adds your own.
"""
import copy
import functools
import inspect

from food101.caffe2.helpers.algebra import mat_mul, reduce_sum, sub, sum as sum_, transpose
from food101.caffe2.helpers.arg_scope import arg_scope, get_current_scope
from food101.caffe2.helpers.array_helpers import concat, depth_concat
from food101.caffe2.helpers.control_ops import cond, loop
from food101.caffe2.helpers.conv import conv, conv_nd, conv_transpose, group_conv
from food101.caffe2.helpers.db_input import db_input
from food101.caffe2.helpers.dropout import dropout
from food101.caffe2.helpers.fc import fc
from food101.caffe2.helpers.nonlinearity import prelu, relu, tanh
from food101.caffe2.helpers.normalization import lrn, softmax, spatial_bn
from food101.caffe2.helpers.pooling import average_pool, max_pool, max_pool_with_index
from food101.caffe2.helpers.tools import image_input, video_input
from food101.caffe2.helpers.train import accuracy, add_weight_decay, iter as iter_
from food101.caffe2.model_helper import ModelHelper

_registry = {
    "arg_scope": arg_scope,
    "fc": fc,
    "dropout": dropout,
    "max_pool": max_pool,
    "average_pool": average_pool,
    "max_pool_with_index": max_pool_with_index,
    "lrn": lrn,
    "softmax": softmax,
    "spatial_bn": spatial_bn,
    "relu": relu,
    "tanh": tanh,
    "prelu": prelu,
    "concat": concat,
    "depth_concat": depth_concat,
    "sum": sum_,
    "sub": sub,
    "mat_mul": mat_mul,
    "reduce_sum": reduce_sum,
    "transpose": transpose,
    "iter": iter_,
    "accuracy": accuracy,
    "conv": conv,
    "conv_nd": conv_nd,
    "conv_transpose": conv_transpose,
    "group_conv": group_conv,
    "db_input": db_input,
    "image_input": image_input,
    "video_input": video_input,
    "add_weight_decay": add_weight_decay,
    "cond": cond,
    "loop": loop,
}
# the helpers are reached only through the wrapper (module __getattr__ below)
del (mat_mul, reduce_sum, sub, sum_, transpose, arg_scope, concat, depth_concat, conv, conv_nd,
     conv_transpose, group_conv, db_input, dropout, fc, prelu, relu, tanh, lrn, softmax,
     spatial_bn, average_pool, max_pool, max_pool_with_index, accuracy, add_weight_decay, iter_,
     image_input, video_input, cond, loop)


def _accepted_names(func):
    """The keyword names `func` takes, or None when it takes **kwargs (then all pass)."""
    params = inspect.signature(func).parameters.values()
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def _wrap(helper_name):
    func = _registry[helper_name]

    @functools.wraps(func)
    def scope_wrapper(*args, **kwargs):
        new_kwargs = {}
        if helper_name != "arg_scope":
            if args and isinstance(args[0], ModelHelper):
                model = args[0]
            elif "model" in kwargs:
                model = kwargs["model"]
            else:
                raise TypeError("brew.%s: the first argument must be the model (a ModelHelper), "
                                "or pass model=<model>" % helper_name)
            new_kwargs = copy.deepcopy(model.arg_scope)
        accepted = _accepted_names(func)
        if accepted is not None:
            new_kwargs = {k: v for k, v in new_kwargs.items() if k in accepted}
        new_kwargs.update(get_current_scope().get(helper_name, {}))
        new_kwargs.update(kwargs)
        return func(*args, **new_kwargs)

    scope_wrapper.__name__ = helper_name
    return scope_wrapper


def __getattr__(helper_name):
    if helper_name not in _registry:
        raise AttributeError("brew has no helper %r (registered: %s)"
                             % (helper_name, ", ".join(sorted(_registry))))
    return _wrap(helper_name)


def __dir__():
    return sorted(set(globals()) | set(_registry))


def Register(helper):
    """Add `helper` (named by its __name__) to brew: brew.<name>(model, ...)."""
    name = helper.__name__
    if name in _registry:
        raise AttributeError("brew already has a helper named %r; rename yours" % name)
    _registry[name] = helper


def has_helper(helper_or_helper_name):
    name = helper_or_helper_name if isinstance(helper_or_helper_name, str) \
        else helper_or_helper_name.__name__
    return name in _registry
