"""The process-wide table of Python op functions (Caffe2 kept it in C++: register_python_op).

`net.Python(f)` registers `f` here under a token that travels in the OperatorDef; the Python op
(ops/python.py) looks the token up when a net holding it is created.
"""
import itertools
import pickle

from food101.caffe2.errors import Caffe2Error

IMPLEMENTATIONS = {}
_TOKENS = itertools.count()


def register_python_op(f, grad_f=None, python_func_type=None, pass_workspace=False):
    """Keep `f` (and `grad_f`) under a new token; returns the token for the op's argument."""
    if python_func_type:
        impl = python_func_type(f)
        f, grad_f = impl.forward, impl.backward
    else:
        f = built(f)
        grad_f = built(grad_f) if grad_f is not None else None
    token = "python_op_%d" % next(_TOKENS)
    IMPLEMENTATIONS[token] = (f, grad_f, bool(pass_workspace))
    return token


def python_op_arguments(f, grad_f=None, python_func_type=None, pass_workspace=False):
    """The Python op's arguments for Net.Python: a token, or pickled builder tuples."""
    if isinstance(f, tuple) or isinstance(grad_f, tuple):
        if grad_f is not None and isinstance(f, tuple) != isinstance(grad_f, tuple):
            raise Caffe2Error("Python op: a tuple has to be passed to both f and grad_f or neither")
        normalize = lambda t: (t[0], tuple(t[1]), dict(t[2])) if t else None  # noqa: E731
        return {"pickled_builder": pickle.dumps(normalize(f)),
                "pickled_grad_builder": pickle.dumps(normalize(grad_f)) if grad_f else b"",
                "pass_workspace": pass_workspace}
    return {"token": register_python_op(f, grad_f, python_func_type, pass_workspace)}


def built(f):
    if isinstance(f, tuple):
        if len(f) != 3:
            raise Caffe2Error("Python op: a builder tuple is (func, args, kwargs), got %d items" % len(f))
        func, args, kwargs = f
        return func(*args, **kwargs)
    return f


