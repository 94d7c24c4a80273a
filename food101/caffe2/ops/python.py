"""The Python op: a Python function as an operator (`net.Python(f, grad_f)(inputs, outputs)`).

    def f(inputs, outputs):                       # lists of TensorCPU views
        outputs[0].feed(2 * inputs[0].data)       # or: outputs[0].reshape(shape); .data[...] = ...
    def grad_f(inputs, outputs):                  # inputs: f's inputs, f's outputs, output grads
        outputs[0].feed(2 * inputs[2].data)       # outputs: the gradients of f's inputs
    net.Python(f, grad_f)(["x"], ["y"])

`f` is registered under a token (the op's `token` argument) when the net is built, as Caffe2
does; a `(builder, args, kwargs)` tuple is pickled into the op and called each time a net
holding the op is created. `pass_workspace=True` adds a third argument: the workspace the op
runs in (workspace.C.Workspace: `.blobs[name].fetch()`, `.fetch_blob`, `.feed_blob`). Values cross as numpy
arrays on the host, as in Caffe2's CPU PythonOp; outputs go back to the op's device.

Gradients: with `grad_f` the op is a `torch.autograd.Function`, so AddGradientOperators reaches
through it; `grad_output_indices` / `grad_input_indices` pick the subsets as in Caffe2.
Without `grad_f` no gradient flows through the op.
"""
import pickle

import numpy as np
import torch

from food101.caffe2.errors import Caffe2Error, MissingBlobError
from food101.caffe2.ops.registry import operator
from food101.caffe2.python_functions import IMPLEMENTATIONS, built

class TensorCPU:
    """What a Python op function sees for one blob: `.data` (numpy), `.shape`, `.feed`, `.reshape`."""

    def __init__(self, array=None):
        self._array = array

    @property
    def data(self):
        if self._array is None:
            self._array = np.empty((0,), dtype=np.float32)
        return self._array

    @property
    def shape(self):
        return tuple(self.data.shape)

    def feed(self, value):
        self._array = np.array(value, copy=True)
        return True

    def reshape(self, shape):
        dtype = self._array.dtype if self._array is not None else np.float32
        if self._array is None or tuple(self._array.shape) != tuple(shape):
            self._array = np.zeros(tuple(shape), dtype=dtype)

    def _fetch(self):
        return self.data


class _BlobView:
    def __init__(self, workspace, name):
        self._workspace, self._name = workspace, name

    def fetch(self):
        return _to_numpy(self._workspace.blobs[self._name])

    def feed(self, value):
        self._workspace.blobs[self._name] = _to_torch(value, torch.device("cpu"))
        return True


class WorkspaceView:
    """The workspace a `pass_workspace` function gets: the part of C.Workspace such functions
    use. (C.Workspace itself imports the executor, which imports every op module, this one too.)"""

    def __init__(self, workspace):
        self._workspace = workspace

    @property
    def blobs(self):
        return {name: _BlobView(self._workspace, name) for name in self._workspace.blobs}

    def fetch_blob(self, name):
        if name not in self._workspace.blobs:
            raise MissingBlobError("Python op: blob %r does not exist in the workspace" % name)
        return _BlobView(self._workspace, name).fetch()

    def feed_blob(self, name, value):
        return _BlobView(self._workspace, name).feed(value)

    def has_blob(self, name):
        return name in self._workspace.blobs

    def create_blob(self, name):
        self._workspace.blobs.setdefault(name, torch.empty(0))
        return _BlobView(self._workspace, name)


def _to_numpy(value):
    if isinstance(value, torch.Tensor):
        value = value.detach()
        return (value.float() if value.dtype == torch.bfloat16 else value).cpu().numpy()
    return value


def _to_torch(value, device):
    array = np.asarray(value)
    if array.dtype.kind in "OSU":
        return array
    return torch.from_numpy(np.array(array, copy=True, order="C")).to(device)


def _call(fn, inputs, num_outputs, extra, where):
    outputs = [TensorCPU() for _ in range(num_outputs)]
    try:
        fn([TensorCPU(_to_numpy(v)) for v in inputs], outputs, *extra)
    except Caffe2Error:
        raise
    except Exception as e:  # noqa: BLE001 - the user's function may raise anything
        raise Caffe2Error("Python op %s raised %s: %s" % (where, type(e).__name__, e)) from e
    return [o.data for o in outputs]


class _PythonFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec, *inputs):
        f, grad_f, extra, num_outputs, device, where, grad_out_idx, grad_in_idx = spec
        arrays = _call(f, inputs, num_outputs, extra, where)
        outputs = tuple(_to_torch(a, device) for a in arrays)
        ctx.spec, ctx.num_inputs = spec, len(inputs)
        ctx.save_for_backward(*inputs, *[o for o in outputs if isinstance(o, torch.Tensor)])
        ctx.mark_non_differentiable(*[o for o in outputs if isinstance(o, torch.Tensor)
                                      and not o.is_floating_point()])
        return outputs if len(outputs) != 1 else outputs[0]

    @staticmethod
    def backward(ctx, *grad_outputs):
        f, grad_f, extra, num_outputs, device, where, grad_out_idx, grad_in_idx = ctx.spec
        saved = ctx.saved_tensors
        inputs, outputs = saved[:ctx.num_inputs], saved[ctx.num_inputs:]
        out_idx = grad_out_idx or list(range(num_outputs))
        in_idx = grad_in_idx or list(range(ctx.num_inputs))
        grads = [g if g is not None else torch.zeros_like(outputs[i])
                 for i, g in enumerate(grad_outputs)]
        arrays = _call(grad_f, list(inputs) + list(outputs) + [grads[i] for i in out_idx],
                       len(in_idx), extra, where + " (grad_f)")
        result = [None] * ctx.num_inputs
        for position, array in zip(in_idx, arrays):
            result[position] = _to_torch(array, inputs[position].device).to(inputs[position].dtype) \
                .reshape(inputs[position].shape)
        return (None, *result)


def _raw(value):
    # the registry hands string arguments over as text when they happen to be valid UTF-8
    return value.encode("utf-8") if isinstance(value, str) else value


def _resolve(kwargs):
    """Per net creation: find the registered function, or build it from the pickled tuple."""
    builder = _raw(kwargs.pop("pickled_builder", b""))
    grad_builder = _raw(kwargs.pop("pickled_grad_builder", b""))
    if builder:
        f = built(pickle.loads(builder))
        grad_f = built(pickle.loads(grad_builder)) if grad_builder else None
        kwargs["impl"] = (f, grad_f, bool(kwargs.get("pass_workspace")))
    else:
        token = kwargs.get("token", "")
        if token not in IMPLEMENTATIONS:
            raise Caffe2Error("Python op: token %r is not registered in this process (Python ops "
                              "hold a function of the process that built the net; rebuild the net "
                              "with net.Python(f))" % token)
        kwargs["impl"] = IMPLEMENTATIONS[token]
    return kwargs


@operator("Python", context=True, prepare=_resolve)
def python_op(*inputs, token="", pass_workspace=0, grad_output_indices=(), grad_input_indices=(),
              pickled_builder=b"", pickled_grad_builder=b"", impl=None, ctx):
    f, grad_f, with_workspace = impl
    extra = (WorkspaceView(ctx.workspace),) if with_workspace else ()
    where = "%r in net %r" % (ctx.op.name or token, ctx.net_name)
    if grad_f is None or not torch.is_grad_enabled():
        arrays = _call(f, inputs, ctx.num_outputs, extra, where)
        outputs = tuple(_to_torch(a, ctx.device) for a in arrays)
        return outputs
    spec = (f, grad_f, extra, ctx.num_outputs, ctx.device, where,
            list(grad_output_indices), list(grad_input_indices))
    result = _PythonFunction.apply(spec, *inputs)
    return result if isinstance(result, tuple) else (result,)


@operator("PythonGradient", grad_inputs=(), context=True, prepare=_resolve)
def python_gradient_op(*blobs, token="", pass_workspace=0, grad_output_indices=(),
                       grad_input_indices=(), pickled_builder=b"", pickled_grad_builder=b"",
                       impl=None, ctx):
    """Caffe2's per-op gradient of the Python op (core.GradientRegistry nets): grad_f on
    [inputs, outputs, chosen output gradients] -> the chosen input gradients."""
    f, grad_f, with_workspace = impl
    if grad_f is None:
        raise Caffe2Error("PythonGradient: the Python op %r was registered without grad_f" % token)
    extra = (WorkspaceView(ctx.workspace),) if with_workspace else ()
    arrays = _call(grad_f, blobs, ctx.num_outputs, extra, "%r (grad_f)" % token)
    return tuple(_to_torch(a, ctx.device) for a in arrays)
