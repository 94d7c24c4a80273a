"""Compiled execution: a prepared net run as a few torch.compile'd graphs.

The eager `PreparedNet` calls one Python function per op, which at small batches on a GPU costs
more than the kernels. `CompiledNet` keeps the same prepared steps but groups them:

    steps:   [fwd op ... fwd op] [AutogradGradient] [update op ... update op]
    runs as: forward graph  ──►  torch.autograd.grad  ──►  update graph
             (autocast bf16,      (through the compiled     (no_grad, fp32 master
              channels_last)       forward's backward)        weights and momenta)

Each group of consecutive compilable ops becomes one function over a dict of blobs, compiled
once by `torch.compile` (inductor by default; CUDA graphs with mode="reduce-overhead"). Ops that
cannot live in a graph (DB readers, Print) run eagerly between the groups, and a group whose
compilation fails falls back to eager with a log line. In fp32 the results equal eager
execution within float rounding.

Difference from eager mode, by design: gradients are written for the net's leaves (params and
fed inputs), not for intermediate activations, whose gradients a fused graph never materialises.
"""
import logging
import warnings
from dataclasses import dataclass
from typing import Optional

import torch

from food101.caffe2.executor import AUTOGRAD_OP, CUDA, PreparedNet

log = logging.getLogger(__name__)

# Ops that touch Python objects or host-side scalars (Caffe2 keeps the iteration counter on the
# CPU even in GPU nets): they run between compiled graphs instead of breaking them.
EAGER_ONLY = frozenset({
    "CreateDB", "TensorProtosDBInput", "Print", "Summarize", "CreateMutex", "EnsureCPUOutput",
    "Iter", "AtomicIter", "LearningRate",
    # collectives talk to other processes: never inside a graph (or a CUDA graph capture)
    "CreateCommonWorld", "CloneCommonWorld", "DestroyCommonWorld", "Allreduce", "Broadcast", "Barrier",
})


@dataclass(frozen=True)
class CompileOptions:
    backend: object = "inductor"     # a torch.compile backend name or callable; "aot_eager": quick CPU checks
    mode: Optional[str] = None       # "reduce-overhead" = CUDA graphs, "max-autotune", ...
    channels_last: Optional[bool] = None  # 4-D float blobs in NHWC memory order; None: on CUDA
                                          # only (faster convs there, slower on AVX2 CPUs)
    autocast: Optional[str] = None   # "bfloat16": forward in bf16, params/grads/loss stay fp32
    keep_all_blobs: bool = True      # False: only blobs read later or listed as outputs survive


def cpu_accelerates(feature):
    """Whether this CPU runs `feature` ("bfloat16" or "channels_last") faster than fp32 NCHW:
    bf16 needs native bf16 instructions (AVX512-BF16 / AMX), NHWC convolutions pay off with
    AVX512 (on AVX2 torch's NCHW kernels are faster: measured in benchmarks/train_throughput.py)."""
    capability = torch.backends.cpu.get_cpu_capability()
    if feature == "bfloat16":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    if feature == "channels_last":
        return capability.startswith("AVX512")
    raise ValueError("unknown feature %r" % (feature,))


def _warn_slow_options(options, channels_last, on_cuda, net_name):
    """A warning for each option that makes this device slower, not faster."""
    if on_cuda:
        return
    if options.autocast and not cpu_accelerates(options.autocast):
        warnings.warn("net %r: autocast=%r on a CPU without native %s instructions (capability "
                      "%s) runs slower than fp32; leave autocast unset on this machine"
                      % (net_name, options.autocast, options.autocast,
                         torch.backends.cpu.get_cpu_capability()), RuntimeWarning, stacklevel=3)
    if channels_last and not cpu_accelerates("channels_last"):
        warnings.warn("net %r: channels_last=True on this CPU (capability %s) makes convolutions "
                      "slower than NCHW; leave channels_last unset (it is then used on CUDA only)"
                      % (net_name, torch.backends.cpu.get_cpu_capability()), RuntimeWarning,
                      stacklevel=3)


class _Segment:
    def __init__(self, steps, compiled, reads, writes):
        self.steps, self.compiled, self.reads, self.writes = steps, compiled, reads, writes
        self.fn = None
        self.failed = False


class CompiledNet(PreparedNet):
    def __init__(self, netdef, workspace, options=None, check_inputs=True):
        super().__init__(netdef, workspace, check_inputs)
        self.options = options or CompileOptions()
        on_cuda = any(step.op.device_option.device_type == CUDA for step in self.steps) or (
            netdef.HasField("device_option") and netdef.device_option.device_type == CUDA)
        self.channels_last = (on_cuda if self.options.channels_last is None
                              else bool(self.options.channels_last))
        _warn_slow_options(self.options, self.channels_last, on_cuda, self.name)
        self._autocast_dtype = getattr(torch, self.options.autocast) if self.options.autocast else None
        backward_at = self.backward.index if self.backward else len(self.steps)
        self.forward_segments = self._segments(self.steps[:backward_at])
        self.update_segments = self._segments(self.steps[backward_at + 1:]) if self.backward else []
        self._keep = self._blobs_needed_later()
        self._params_formatted = False

    # -- planning ---------------------------------------------------------------------------
    def _segments(self, steps):
        segments, group = [], []

        def close():
            if group:
                segments.append(self._make_segment(list(group), compiled=True))
                group.clear()

        for step in steps:
            if step.op.type in EAGER_ONLY:
                close()
                segments.append(self._make_segment([step], compiled=False))
            else:
                group.append(step)
        close()
        return segments

    @staticmethod
    def _make_segment(steps, compiled):
        reads, writes = [], []
        for step in steps:
            for name in step.inputs:
                if name not in writes and name not in reads:
                    reads.append(name)
            for name in step.outputs:
                if name not in writes:
                    writes.append(name)
        return _Segment(steps, compiled, reads, writes)

    def _blobs_needed_later(self):
        """The written blobs that must reach the workspace: net outputs, anything a segment
        reads (this iteration or, as state, the next) and the losses (None: every blob)."""
        if self.options.keep_all_blobs:
            return None
        keep = set(self.netdef.external_output)
        for seg in self.forward_segments + self.update_segments:
            keep.update(seg.reads)
        if self.backward:
            keep.update(self.backward.losses + self.backward.seeds)
        return keep

    # -- running ----------------------------------------------------------------------------
    def run(self):
        if self.channels_last and not self._params_formatted:
            self._format_params(self.workspace.blobs)
        super().run()

    def _run_forward(self, blobs, targets):
        with torch.enable_grad() if targets is not None else torch.no_grad():
            self._run_segments(self.forward_segments, blobs, autocast=True)

    def _run_updates(self, blobs):
        self._run_segments(self.update_segments, blobs, autocast=False)

    def _format_params(self, blobs):
        for name in self.backward.leaves if self.backward else ():
            value = blobs.get(name)
            if isinstance(value, torch.Tensor) and value.dim() == 4 and value.is_floating_point():
                blobs[name] = value.contiguous(memory_format=torch.channels_last)
        self._params_formatted = True

    def _run_segments(self, segments, blobs, autocast):
        for seg in segments:
            if not seg.compiled or seg.failed:
                self._run_steps_of(seg, blobs)
                continue
            env = {}
            for name in seg.reads:
                if name not in blobs:
                    self._run_steps_of(seg, blobs)  # raises the eager runtime's clear error
                    break
                value = blobs[name]
                if (self.channels_last and isinstance(value, torch.Tensor)
                        and value.dim() == 4 and value.is_floating_point()):
                    value = value.contiguous(memory_format=torch.channels_last)
                env[name] = value
            else:
                outputs = self._call_compiled(seg, env, autocast)
                if outputs is None:
                    self._run_steps_of(seg, blobs)
                else:
                    blobs.update(outputs)

    def _call_compiled(self, seg, env, autocast):
        device = next((v.device for v in env.values() if isinstance(v, torch.Tensor)),
                      torch.device("cpu"))
        try:
            if seg.fn is None:
                seg.fn = torch.compile(_segment_function(seg.steps, self._keep, seg.writes),
                                       backend=self.options.backend, mode=self.options.mode,
                                       dynamic=False)
            if autocast and self._autocast_dtype is not None:
                with torch.autocast(device.type, dtype=self._autocast_dtype):
                    return seg.fn(env)
            return seg.fn(env)
        except Exception as e:  # noqa: BLE001 - any compiler failure means: run this group eagerly
            seg.failed = True
            first = seg.steps[0].where
            log.warning("net %r: ops from %s could not be compiled (%s: %s); running them eagerly",
                        self.name, first, type(e).__name__, str(e).splitlines()[0][:200])
            return None

    def _run_steps_of(self, seg, blobs):
        """The eager path for a group; like the compiled one it captures no intermediate
        gradient targets (compiled mode writes gradients of leaves only)."""
        self._run_steps(blobs, seg.steps[0].index, seg.steps[-1].index + 1, None)


def _as_tuple(result):
    if isinstance(result, tuple):
        return result
    return (result,) if result is not None else ()


def _segment_function(steps, keep, writes):
    """A pure function {blob: tensor} -> {blob: tensor} running `steps`, as generated source.

    Each segment gets its own code object, so torch.compile caches (and guards) every segment
    separately instead of recompiling one shared closure for each net it meets."""
    returned = [n for n in writes if keep is None or n in keep]
    names = {}  # blob name -> local variable

    def var(blob):
        return names.setdefault(blob, "b%d" % len(names))

    scope = {"_as_tuple": _as_tuple}
    lines = []
    for i, step in enumerate(steps):
        scope["f%d" % i], scope["k%d" % i] = step.fn, step.kwargs
        args = ", ".join(var(n) if n in names else "env[%r]" % n for n in step.inputs)
        lines.append("    r = _as_tuple(f%d(%s%s**k%d))" % (i, args, ", " if args else "", i))
        lines.extend("    %s = r[%d]" % (var(n), j) for j, n in enumerate(step.outputs))
    result = ", ".join("%r: %s" % (n, names[n]) for n in returned)
    source = "def segment(env):\n%s\n    return {%s}\n" % ("\n".join(lines) or "    pass", result)
    code = compile(source, "<caffe2 segment %s>" % (steps[0].where if steps else "empty"), "exec")
    exec(code, scope)  # noqa: S102 - source built above from blob names via repr()
    return scope["segment"]


def is_compiled_type(net_type):
    """NetDef.type values that select compiled execution (Caffe2 picks executors by this field)."""
    return net_type in ("compiled", "torch_compile")


__all__ = ["CompiledNet", "CompileOptions", "cpu_accelerates", "EAGER_ONLY", "AUTOGRAD_OP", "is_compiled_type"]
