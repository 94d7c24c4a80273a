"""Parameter initializers (caffe2.python.modeling.initializers).

An initializer adds the op that creates a parameter to the param_init_net:

    Initializer("XavierFill")                 -> XavierFill([], "conv1_w", shape=[...])
    Initializer("ConstantFill", value=0.1)    -> ConstantFill([], "conv1_b", shape=[...], value=0.1)
    ExternalInitializer()                     -> no op: the blob comes from elsewhere
                                                 (a Model Zoo init_net, FeedBlob)

Helpers take `weight_init=("MSRAFill", {})`-style tuples and/or an initializer class;
`update_initializer` combines them with the helper's default.
"""
from food101.caffe2 import core
from food101.caffe2.modeling.parameter_info import ParameterInfo


class Initializer:
    """Creates a parameter with one fill op `operator_name(**operator_kwargs)`."""

    def __init__(self, operator_name=None, **kwargs):
        self.operator_name = operator_name
        self.operator_kwargs = kwargs

    def update(self, operator_name, kwargs):
        if self.operator_name is not None:
            raise ValueError("initializer already uses %s; it cannot be changed to %s"
                             % (self.operator_name, operator_name))
        self.operator_name = operator_name
        self.operator_kwargs = kwargs

    def create_param(self, param_name, init_net, shape):
        if self.operator_name is None:
            raise ValueError("initializer for %s has no fill operator" % param_name)
        param = getattr(init_net, self.operator_name)(
            [], param_name, shape=shape, **self.operator_kwargs)
        return ParameterInfo(param_id=None, param=param, shape=shape)

    def __repr__(self):
        return "%s(%r, %r)" % (type(self).__name__, self.operator_name, self.operator_kwargs)


class ExternalInitializer:
    """The parameter is provided from outside the model (no fill op is added)."""

    def create_param(self, param_name, init_net, shape):
        if isinstance(param_name, core.BlobReference):
            param = core.BlobReference(str(param_name), init_net)
        elif isinstance(param_name, str):
            param = core.ScopedBlobReference(param_name, init_net)
        else:
            raise TypeError("parameter name must be a str or BlobReference, got %r" % (param_name,))
        return ParameterInfo(param_id=None, param=param, shape=shape)


class PseudoFP16Initializer(Initializer):
    """A float16 parameter with a float32 master copy `<name>_fp32` (in ParameterInfo.blob_copy),
    which build_multi_precision_sgd updates."""

    def create_param(self, param_name, init_net, shape):
        param_fp32 = getattr(init_net, self.operator_name)(
            [], param_name + "_fp32", shape=shape, **self.operator_kwargs)
        param = init_net.FloatToHalf(param_fp32, param_name)
        return ParameterInfo(param_id=None, param=param, shape=shape,
                             blob_copy={core.DataType.FLOAT: param_fp32})


class ReversePseudoFP16Initializer(Initializer):
    """A float32 parameter with a float16 copy `<name>_fp16` for the compute."""

    def create_param(self, param_name, init_net, shape):
        param_fp32 = getattr(init_net, self.operator_name)(
            [], param_name, shape=shape, **self.operator_kwargs)
        param_fp16 = init_net.FloatToHalf(param_fp32, param_name + "_fp16")
        return ParameterInfo(param_id=None, param=param_fp32, shape=shape,
                             blob_copy={core.DataType.FLOAT16: param_fp16})


def update_initializer(initializer_class, operator_name_and_kwargs,
                       default_operator_name_and_kwargs):
    """The initializer a helper uses.

    initializer_class: None (plain Initializer) or a class taking (operator_name, **kwargs).
    operator_name_and_kwargs: the user's ("OpName", {kwargs}) or None for the default,
    e.g. update_initializer(None, None, ("XavierFill", {})) -> Initializer("XavierFill").
    """
    if operator_name_and_kwargs is None:
        operator_name_and_kwargs = default_operator_name_and_kwargs
    name, kwargs = operator_name_and_kwargs
    if initializer_class is None:
        return Initializer(name, **kwargs)
    if isinstance(initializer_class, (Initializer, ExternalInitializer)):
        return initializer_class  # an instance given ready-made
    if isinstance(initializer_class, type) and issubclass(initializer_class, ExternalInitializer):
        return initializer_class()
    return initializer_class(name, **kwargs)
