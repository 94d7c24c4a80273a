"""ParameterTags and ParameterInfo (caffe2.python.modeling.parameter_info)."""
import numpy as np

from food101.caffe2 import core


class ParameterTags:
    """Tags a helper gives a parameter when it creates it.

    WEIGHT: weight decay applies (conv/fc `_w`, spatial_bn `_s`); BIAS: `_b`;
    COMPUTED_PARAM: state the net computes rather than learns (spatial_bn `_rm`, `_riv`):
    kept in `model.GetComputedParams()`, never in `model.params`, never optimized."""
    BIAS = "BIAS"
    WEIGHT = "WEIGHT"
    COMPUTED_PARAM = "COMPUTED_PARAM"


class ParameterInfo:
    """One parameter: its blob, shape, gradient blob and (optionally) its own optimizer."""

    def __init__(self, param_id, param, key=None, shape=None, length=None, grad=None,
                 blob_copy=None):
        if not isinstance(param, core.BlobReference):
            raise TypeError("ParameterInfo takes a BlobReference, got %r" % (param,))
        self.param_id = param_id
        self.name = str(param)
        self.blob = param
        self.key = key
        self.shape = shape
        self.size = None if shape is None else int(np.prod(shape))
        self.length = max(1, length if length is not None else 1)
        self.grad = grad
        # equivalent copies in other precisions, {TensorProto.DataType: BlobReference}
        self.blob_copy = blob_copy
        self._optimizer = None

    @property
    def parameter(self):
        return self.blob

    @property
    def optimizer(self):
        return self._optimizer

    @optimizer.setter
    def optimizer(self, value):
        if self._optimizer is not None:
            raise ValueError("parameter %r already has an optimizer" % self.name)
        self._optimizer = value

    def grad_type(self):
        if self.grad is None:
            return None
        if isinstance(self.grad, core.GradientSlice):
            return core.GradientSlice
        return core.BlobReference

    def __str__(self):
        return self.name

    def __repr__(self):
        grad = None if self.grad is None else str(self.grad)
        return "ParameterInfo(%r, shape=%r, grad=%r)" % (self.name, self.shape, grad)
