"""Elementwise activations: Relu, LeakyRelu, PRelu, Elu, Sigmoid, Tanh.

torch's gradients equal Caffe2's here (Relu's is dY where Y > 0, as in ReluGradient).
"""
import torch
import torch.nn.functional as F

from food101.caffe2.errors import enforce
from food101.caffe2.ops.common import channel_axis, check_order
from food101.caffe2.ops.registry import operator


@operator("Relu")
def relu(X):
    return torch.relu(X)


@operator("LeakyRelu")
def leaky_relu(X, *, alpha=0.01):
    return F.leaky_relu(X, alpha)


@operator("Elu")
def elu(X, *, alpha=1.0):
    return F.elu(X, alpha)


@operator("PRelu")
def prelu(X, Slope, *, order="NCHW"):
    """max(0, x) + slope * min(0, x); one slope per channel, or one shared (Slope of size 1)."""
    check_order(order)
    if Slope.numel() == 1:
        slope = Slope.reshape(())
    else:
        axis = channel_axis(X.dim(), order)
        enforce(X.dim() >= 2 and Slope.numel() == X.shape[axis],
                "Slope has %d values; it needs 1 or one per channel (X shape %s, %s)"
                % (Slope.numel(), list(X.shape), order))
        shape = [1] * X.dim()
        shape[axis] = -1
        slope = Slope.reshape(shape)
    return torch.where(X > 0, X, X * slope)


@operator("Sigmoid")
def sigmoid(X):
    return torch.sigmoid(X)


@operator("Tanh")
def tanh(X):
    return torch.tanh(X)

