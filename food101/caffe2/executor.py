"""NetDef -> a prepared torch callable; gradients through torch autograd.

Preparing a net (`PreparedNet`, what `workspace.CreateNet` builds) happens once:

    NetDef ──► for each OperatorDef: registry lookup, Argument parsing (+ the op's `prepare`
               hook), device resolution, input-existence check
           ──► a list of `Step`s (function, input names, output names, kwargs, context)

Running it is a short loop over the steps that reads input blobs from the workspace dict, calls
the op function and binds the results to the output names. Nothing is parsed per iteration.

Gradients. Real Caffe2 appends one hand-written gradient operator per forward op. Here
`add_gradient_ops` appends, after a `ConstantFill` of 1.0 for every loss (`<loss>_autogen_grad`,
as Caffe2 names it), a single `AutogradGradient` op whose outputs are the `<blob>_grad` blobs
Caffe2 would have produced: every blob on a path from the losses back to the inputs, with
`StopGradient` and each op's non-differentiable inputs cutting the path. When the net runs, the
forward ops before that op run with autograd recording, and the op calls `torch.autograd.grad`
once. Ops after it (optimizer updates) run without recording.

In-place names (`Relu conv1 -> conv1`) are rebound, never mutated, so autograd sees every
version. `<blob>_grad` is the gradient of the blob's *first* version in the net, which is
what Caffe2's in-place gradient chain leaves in that blob.
"""
from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch

from food101.caffe2 import errors
from food101.caffe2.errors import Caffe2Error, MissingBlobError, OperatorError, closest
from food101.caffe2.ops.registry import lookup, operator, parse_arguments
from food101.caffe2.utils import ArgsToDict, make_op, set_arg

AUTOGRAD_OP = "AutogradGradient"
CPU, CUDA = 0, 1


@operator(AUTOGRAD_OP, grad_inputs=())
def autograd_gradient(*inputs, wrt=(), num_losses=1):
    """Runs only as a step of a prepared net (see PreparedNet._run_backward)."""
    raise Caffe2Error("AutogradGradient computes gradients of the ops before it in the same net; "
                      "it cannot run on its own (RunOperatorOnce)")


def grad_name(blob):
    return blob + "_grad"


def add_gradient_ops(netdef, ys, device_option=None):
    """Append loss-gradient fills and one AutogradGradient op to `netdef`.

    ys: a list of loss blob names, or a dict {loss: fed gradient blob, or None}. A loss without
    a fed gradient is seeded with 1.0 by a ConstantFill (`<loss>_autogen_grad`, on
    `device_option`), as Caffe2 does.
    Returns {blob: gradient blob} for every blob that receives a gradient, losses included;
    a blob read only by a Gather gets (indices, values) instead, Caffe2's sparse gradient.
    """
    given = {str(y): g for y, g in ys.items()} if isinstance(ys, dict) else dict.fromkeys(map(str, ys))
    seeds = {y: str(y) + "_autogen_grad" if g is None else str(g) for y, g in given.items()}
    fills = [make_op("ConstantFill", [y], [seeds[y]], device_option=device_option, value=1.0)
             for y, g in given.items() if g is None]
    needed = set(seeds)
    ever_needed = []
    consumers = {}  # blob -> the (op, input position) on the gradient path reading it
    for op in reversed(netdef.op):
        if not any(o in needed for o in op.output):
            continue
        schema = lookup(op.type, netdef.name)
        for o in op.output:
            if o not in op.input:  # an earlier version of `o` is dead before this op
                needed.discard(o)
        for position, name in enumerate(op.input):
            if schema.differentiable(position):
                consumers.setdefault(name, []).append((op, position))
            if schema.differentiable(position) and name not in needed:
                needed.add(name)
                ever_needed.append(name)
    sparse = _sparse_gradients(consumers, seeds)
    wrt = [b for b in _forward_order(netdef, ever_needed) if b not in seeds and b not in sparse]
    grad_op = make_op(AUTOGRAD_OP, list(seeds) + list(seeds.values()), [grad_name(b) for b in wrt],
                      wrt=wrt, num_losses=len(seeds))
    grad_op.is_gradient_op = True
    for op in fills:
        op.is_gradient_op = True
    netdef.op.extend(fills + [grad_op])
    grad_map = dict(seeds)
    grad_map.update({b: grad_name(b) for b in wrt})
    grad_map.update(sparse)
    return grad_map


# Ops whose gradient for the DATA input is sparse in Caffe2 (GatherGradient): the rows read
# (indices) and the gradient of those rows (the output's gradient).
SPARSE_GRADIENT_INPUTS = {"Gather": 0}


def _sparse_gradients(consumers, seeds):
    """{blob: (indices, values)} for blobs whose one reader on the gradient path is a Gather
    (Caffe2's GradientSlice); other blobs keep dense gradients."""
    sparse = {}
    for blob, readers in consumers.items():
        if blob in seeds or len(readers) != 1:
            continue
        op, position = readers[0]
        if SPARSE_GRADIENT_INPUTS.get(op.type) == position and len(op.input) > 1:
            out = op.output[0]
            sparse[blob] = (op.input[1], seeds.get(out, grad_name(out)))
    return sparse


def _forward_order(netdef, names):
    """`names` ordered by first appearance in the net, for readable gradient op outputs."""
    rank = {}
    for op in netdef.op:
        for n in list(op.input) + list(op.output):
            rank.setdefault(n, len(rank))
    return sorted(set(names), key=lambda n: rank.get(n, len(rank)))


def resolve_device(device_option, where):
    """DeviceOption -> torch.device; CUDA without a GPU is a clear error, not a late crash."""
    if device_option is None or device_option.device_type == CPU:
        return torch.device("cpu")
    if device_option.device_type == CUDA:
        index = device_option.device_id
        if not torch.cuda.is_available():
            raise Caffe2Error("%s asks for CUDA device %d, but this machine has no usable CUDA GPU "
                              "(torch.cuda.is_available() is False); run on CPU or on a GPU machine"
                              % (where, index))
        if index >= torch.cuda.device_count():
            raise Caffe2Error("%s asks for CUDA device %d, but only %d CUDA device(s) exist"
                              % (where, index, torch.cuda.device_count()))
        return torch.device("cuda", index)
    raise Caffe2Error("%s asks for device_type %d; only CPU (0) and CUDA (1) are supported"
                      % (where, device_option.device_type))


class OpContext:
    """What an op with `context=True` may reach: its device, the RNG, the workspace."""
    __slots__ = ("workspace", "device", "op", "net_name", "index", "num_outputs")

    def __init__(self, workspace, device, op, net_name, index):
        self.workspace = workspace
        self.device = device
        self.op = op
        self.net_name = net_name
        self.index = index
        self.num_outputs = len(op.output)

    @property
    def generator(self):
        return self.workspace.generator(self.device)


@dataclass(frozen=True)
class BackwardSpec:
    """What a net's AutogradGradient op asks for, worked out once when the net is prepared."""
    index: int                     # the op's position in the net
    losses: List[str]              # differentiated blobs ...
    seeds: List[str]               # ... and the blobs holding dLoss (1.0 fills or fed gradients)
    wrt: List[str]                 # blobs that receive a gradient, in forward order
    outputs: List[str]             # their gradient blobs (<blob>_grad), same order
    leaves: List[str]              # wrt blobs read from the workspace before any op writes them
    captures: Dict[int, List[Tuple[int, str]]]  # op index -> [(output position, wrt blob)]
    record_from: int               # the first op that autograd must record


class Step:
    __slots__ = ("fn", "inputs", "outputs", "kwargs", "op", "index", "where", "single")

    def __init__(self, fn, inputs, outputs, kwargs, op, index, where):
        self.fn, self.inputs, self.outputs, self.kwargs = fn, inputs, outputs, kwargs
        self.op, self.index, self.where = op, index, where
        self.single = outputs[0] if len(outputs) == 1 else None  # the fast binding path


def describe_op(net_name, index, op):
    label = "%s %r" % (op.type, op.name) if op.name else op.type
    return "net %r, op #%d (%s)" % (net_name, index, label)


class PreparedNet:
    """A NetDef turned into steps once; `run()` executes it against a workspace."""

    def __init__(self, netdef, workspace, check_inputs=True):
        self.name = netdef.name
        self.netdef = netdef
        self.workspace = workspace
        net_device = netdef.device_option if netdef.HasField("device_option") else None
        self.steps = []
        self.backward = None
        produced = set()
        for index, op in enumerate(netdef.op):
            where = describe_op(self.name, index, op)
            schema = lookup(op.type, self.name)
            if schema.max_inputs is not None and not (schema.min_inputs <= len(op.input)
                                                       <= schema.max_inputs):
                raise Caffe2Error("%s: takes %d to %d inputs, got %d (%s)" % (
                    where, schema.min_inputs, schema.max_inputs, len(op.input), list(op.input)))
            if check_inputs:
                for name in op.input:
                    if name not in produced and name not in workspace.blobs:
                        raise MissingBlobError(_missing_message(where, name, workspace.blobs))
            produced.update(op.output)
            device_option = op.device_option if op.HasField("device_option") else net_device
            device = resolve_device(device_option, where)
            try:
                kwargs = parse_arguments(schema, op)
            except Caffe2Error as e:
                raise type(e)("%s: %s" % (where, e)) from None
            if schema.context:
                kwargs["ctx"] = OpContext(workspace, device, op, self.name, index)
            step = Step(schema.fn, tuple(op.input), tuple(op.output), kwargs, op, index, where)
            if op.type == AUTOGRAD_OP:
                if self.backward is not None:
                    raise Caffe2Error("%s: a net may hold one AutogradGradient op" % where)
                self.backward = self._prepare_backward(op, index)
            self.steps.append(step)

    def _prepare_backward(self, op, index):
        args = ArgsToDict(op.arg)
        num_losses = args.get("num_losses", 1)
        wrt = list(args.get("wrt", []))
        losses, seeds = list(op.input[:num_losses]), list(op.input[num_losses:])
        # Where each gradient target is captured: a blob not written before it is read is a
        # leaf taken from the workspace; otherwise the first op that writes it.
        first_write = {}
        leaves = []
        first_read = index
        for step_index, fwd in enumerate(self.netdef.op[:index]):
            for name in fwd.input:
                if name in wrt and name not in first_write and name not in leaves:
                    leaves.append(name)
                    first_read = min(first_read, step_index)
            for position, name in enumerate(fwd.output):
                if name in wrt and name not in first_write and name not in leaves:
                    first_write[name] = (step_index, position)
        captures = {}
        for name, (step_index, position) in first_write.items():
            captures.setdefault(step_index, []).append((position, name))
        # Before the first op that reads a leaf or writes a target nothing can require a
        # gradient (a frozen backbone up to its StopGradient): those ops run without recording.
        record_from = min([first_read] + list(captures))
        return BackwardSpec(index=index, losses=losses, seeds=seeds, wrt=wrt,
                            outputs=list(op.output), leaves=leaves, captures=captures,
                            record_from=record_from)

    # -- what training and diagnostics may use --------------------------------------------
    @property
    def forward_end(self):
        """The index of the AutogradGradient op: ops before it are the forward pass (all ops
        when the net has no gradient op)."""
        return self.backward.index if self.backward is not None else len(self.steps)

    def __len__(self):
        return len(self.steps)

    def set_op_arguments(self, index, **values):
        """Set arguments of op `index` (in the net's own NetDef copy) and re-parse them, so the
        next run, eager or compiled, uses them. E.g. `net.set_op_arguments(i, base_lr=-0.005)`."""
        step = self.steps[index]
        for key, value in values.items():
            set_arg(step.op, key, value)
        schema = lookup(step.op.type, self.name)
        try:
            kwargs = parse_arguments(schema, step.op)
        except Caffe2Error as e:
            raise type(e)("%s: %s" % (step.where, e)) from None
        if "ctx" in step.kwargs:
            kwargs["ctx"] = step.kwargs["ctx"]
        # in place: a compiled net's generated code holds this very dict
        step.kwargs.clear()
        step.kwargs.update(kwargs)

    def run_steps(self, start=0, stop=None, observe=None):
        """Run ops [start, stop) against the workspace as plain ops, without autograd (the
        gradient op cannot run this way). observe(index, inputs, outputs), if given, is called
        after each op with its input values and its output values (a tuple)."""
        stop = len(self.steps) if stop is None else stop
        with torch.no_grad():
            self._run_steps(self.workspace.blobs, start, stop, None, observe)

    def run_nested(self):
        """Run every op under the caller's autograd mode: control-flow ops (If, While, Do) run
        their subnets this way, so an outer net's gradients flow through the branch taken."""
        if self.backward is not None:
            raise Caffe2Error("net %r: a subnet of a control-flow op cannot hold gradient ops"
                              % self.name)
        self._run_steps(self.workspace.blobs, 0, len(self.steps), None)

    # -- running ------------------------------------------------------------------------------
    def run(self):
        blobs = self.workspace.blobs
        if self.backward is None:
            with torch.no_grad():
                self._run_forward(blobs, None)
            return
        targets, injected = {}, {}
        for name in self.backward.leaves:
            value = blobs.get(name)
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                leaf = value.detach().requires_grad_(True)
                blobs[name] = injected[name] = targets[name] = leaf
        try:
            self._run_forward(blobs, targets)
            self._run_backward(blobs, targets)
        finally:
            for name, leaf in injected.items():  # the workspace keeps plain tensors
                if blobs.get(name) is leaf:
                    blobs[name] = leaf.detach()
        with torch.no_grad():
            self._run_updates(blobs)

    def _run_forward(self, blobs, targets):
        """The ops before the gradient op (all ops when there is none); with gradients, autograd
        records from backward.record_from on."""
        if targets is None:
            self._run_steps(blobs, 0, self.forward_end, None)
            return
        with torch.no_grad():
            self._run_steps(blobs, 0, self.backward.record_from, None)
        with torch.enable_grad():
            self._run_steps(blobs, self.backward.record_from, self.backward.index, targets)

    def _run_updates(self, blobs):
        """The ops after the gradient op (optimizer updates), without autograd."""
        self._run_steps(blobs, self.backward.index + 1, len(self.steps), None)

    def _run_steps(self, blobs, start, stop, targets, observe=None):
        """Ops [start, stop): read inputs, call, bind outputs. `targets` (gradient targets,
        while recording) receives the blobs captured by the backward spec."""
        captures = self.backward.captures if targets is not None else None
        for step in self.steps[start:stop]:
            try:
                inputs = [blobs[name] for name in step.inputs]
                result = step.fn(*inputs, **step.kwargs)
            except Exception as e:  # noqa: BLE001 - re-raised below, with the op named
                raise _op_failure(step, blobs, e) from None
            name = step.single
            if name is not None and type(result) is not tuple and result is not None:
                blobs[name] = result  # the common case: one tensor for one output
                result = (result,)
            else:
                result = _bind_outputs(step, blobs, result)
            if observe is not None:
                observe(step.index, inputs, result)
            if captures and step.index in captures:
                self._capture(blobs, targets, captures[step.index], result)

    @staticmethod
    def _capture(blobs, targets, positions, result):
        for position, name in positions:
            if name in targets:
                continue
            value = result[position]
            if (isinstance(value, torch.Tensor) and value.is_floating_point()
                    and not value.requires_grad):
                # e.g. StopGradient's output: Caffe2 still writes its gradient, and
                # the path stops there because this fresh leaf has no history.
                value = value.detach().requires_grad_(True)
                blobs[name] = value
            targets[name] = value

    def _run_backward(self, blobs, targets):
        bw = self.backward
        losses, seeds = [], []
        for loss_name, seed_name in zip(bw.losses, bw.seeds):
            for name in (loss_name, seed_name):
                if name not in blobs:
                    raise MissingBlobError(_missing_message(
                        describe_op(self.name, bw.index, self.netdef.op[bw.index]), name, blobs))
            loss = blobs[loss_name]
            if isinstance(loss, torch.Tensor) and loss.requires_grad:
                losses.append(loss)
                seeds.append(blobs[seed_name].to(loss.dtype).reshape(loss.shape))
        wanted = [(name, out) for name, out in zip(bw.wrt, bw.outputs)
                  if isinstance(targets.get(name), torch.Tensor) and targets[name].requires_grad]
        grads = [None] * len(wanted)
        if losses and wanted:
            grads = torch.autograd.grad(losses, [targets[n] for n, _ in wanted], seeds,
                                        allow_unused=True)
        for (name, out), grad in zip(wanted, grads):
            blobs[out] = torch.zeros_like(targets[name]) if grad is None else grad.detach()


def _op_failure(step, blobs, error):
    """The clear error for an op that could not run: a missing input, or the op's own."""
    missing = next((n for n in step.inputs if n not in blobs), None)
    if missing is not None:
        return MissingBlobError(_missing_message(step.where, missing, blobs))
    if isinstance(error, Caffe2Error):
        return type(error)("%s: %s" % (step.where, error))
    if isinstance(error, (RuntimeError, ValueError, TypeError, IndexError)):
        inputs = [blobs[name] for name in step.inputs]
        return OperatorError("%s failed on inputs %s: %s" % (
            step.where, _describe_inputs(step.inputs, inputs), str(error).strip()))
    return error


def _bind_outputs(step, blobs, result):
    """Bind an op's result (a tensor, a tuple, or None) to its outputs; extras are dropped."""
    if not isinstance(result, tuple):
        result = (result,) if result is not None else ()
    if len(result) < len(step.outputs):
        raise OperatorError("%s: produced %d outputs, the op asks for %d (%s)" % (
            step.where, len(result), len(step.outputs), list(step.outputs)))
    for name, value in zip(step.outputs, result):
        blobs[name] = value
    return result


def _describe_inputs(names, values):
    parts = []
    for name, value in zip(names, values):
        if isinstance(value, torch.Tensor):
            parts.append("%s %s %s" % (name, list(value.shape), str(value.dtype).replace("torch.", "")))
        else:
            parts.append("%s (%s)" % (name, type(value).__name__))
    return "[" + ", ".join(parts) + "]"


def _missing_message(where, name, blobs):
    hint = closest(name, blobs)
    return "%s: input blob %r does not exist in the workspace%s (%d blobs exist%s)" % (
        where, name, "; did you mean " + " or ".join(repr(h) for h in hint) if hint else "",
        len(blobs), ": " + ", ".join(sorted(blobs)[:20]) + (" ..." if len(blobs) > 20 else "")
        if blobs else "")


__all__ = ["PreparedNet", "add_gradient_ops", "resolve_device", "OpContext",
           "errors"]
