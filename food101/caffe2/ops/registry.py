"""The operator registry: one small function per Caffe2 op type.

An op is a plain function on torch tensors, registered with a decorator:

    @operator("Relu")
    def relu(X):
        return torch.relu(X)

Positional parameters are the op's inputs in NetDef order (a parameter with a default is an
optional input); keyword-only parameters are Caffe2 arguments with Caffe2's documented
defaults. When a net is created, each OperatorDef's `arg` list is turned once into keyword
arguments (`parse_arguments`), optionally normalised by the op's `prepare` hook (for example
Conv turns kernel/kernels/kernel_h/kernel_w into one tuple), so running the net does no
parsing. An op returns one tensor or a tuple; the executor binds them to the OperatorDef's
outputs in order (an op may return more than the net asks for: extras are dropped).

Ops that need the runtime (the device, the RNG, the workspace for DB readers) declare
`context=True` and receive `ctx` (an `OpContext`) as a keyword argument.

`grad_inputs` names the input positions autograd may differentiate through (default: all);
ops that are not differentiable at all (Accuracy, Iter, fills) say `grad_inputs=()`.
"""
import inspect

from food101.caffe2.errors import UnknownOperatorError, closest
from food101.caffe2.utils import ArgsToDict

_REGISTRY = {}

ALL = "all"
# Arguments that select an implementation in real Caffe2 and mean nothing for torch kernels.
ENGINE_HINT_ARGS = frozenset({
    "engine", "exhaustive_search", "cudnn_exhaustive_search", "ws_nbytes_limit", "use_cudnn",
    "shared_buffer", "float16_compute", "deterministic", "enable_tensor_core", "cudnn_state",
})


class OpSchema:
    __slots__ = ("type", "fn", "prepare", "grad_inputs", "context", "arg_names", "arg_defaults",
                 "min_inputs", "max_inputs")

    def __init__(self, op_type, fn, prepare, grad_inputs, context):
        self.type = op_type
        self.fn = fn
        self.prepare = prepare
        self.grad_inputs = grad_inputs
        self.context = context
        params = inspect.signature(fn).parameters.values()
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        variadic = any(p.kind == p.VAR_POSITIONAL for p in params)
        self.min_inputs = sum(1 for p in positional if p.default is p.empty)
        self.max_inputs = None if variadic else len(positional)
        self.arg_defaults = {p.name: p.default for p in params
                             if p.kind == p.KEYWORD_ONLY and p.name != "ctx"}
        self.arg_names = frozenset(self.arg_defaults)

    def differentiable(self, position):
        return self.grad_inputs == ALL or position in self.grad_inputs

    def __repr__(self):
        return "<op %s>" % self.type


def operator(op_type, *, grad_inputs=ALL, context=False, prepare=None, aliases=()):
    """Register `fn` as the implementation of `op_type` (and of each name in `aliases`)."""
    def register(fn):
        for name in (op_type,) + tuple(aliases):
            if name in _REGISTRY:
                raise ValueError("operator %r is registered twice (%s and %s)"
                                 % (name, _REGISTRY[name].fn.__module__, fn.__module__))
            _REGISTRY[name] = OpSchema(name, fn, prepare, grad_inputs, context)
        return fn
    return register


def lookup(op_type, net_name="?"):
    _load_op_modules()
    try:
        return _REGISTRY[op_type]
    except KeyError:
        hint = closest(op_type, _REGISTRY)
        raise UnknownOperatorError(
            "net %r: unknown operator type %r%s" % (
                net_name, op_type,
                "; closest registered: " + ", ".join(hint) if hint else "")) from None


def registered_types():
    _load_op_modules()
    return sorted(_REGISTRY)


def parse_arguments(schema, op_def):
    """OperatorDef.arg -> keyword arguments for `schema.fn`, with Caffe2's defaults.

    Arguments the op does not know are ignored, as Caffe2 does (engine hints and
    arguments of other implementations travel in real nets)."""
    given = ArgsToDict(op_def.arg)
    kwargs = {k: v for k, v in given.items() if k in schema.arg_names}
    if schema.prepare is not None:
        kwargs = schema.prepare(dict(schema.arg_defaults, **kwargs))
    return kwargs


_LOADED = False


def _load_op_modules():
    """Import every module under ops/ once so their decorators run."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import importlib
    import pkgutil
    from food101.caffe2 import ops as package
    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "registry":
            importlib.import_module("%s.%s" % (package.__name__, info.name))
