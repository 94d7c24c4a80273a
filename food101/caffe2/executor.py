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
import torch

from food101.caffe2 import errors
from food101.caffe2.errors import Caffe2Error, MissingBlobError, OperatorError, closest
from food101.caffe2.ops.registry import lookup, operator, parse_arguments
from food101.caffe2.utils import ArgsToDict, make_op

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
    Returns {blob: gradient blob} for every blob that receives a gradient, losses included.
    """
    given = {str(y): g for y, g in ys.items()} if isinstance(ys, dict) else dict.fromkeys(map(str, ys))
    seeds = {y: str(y) + "_autogen_grad" if g is None else str(g) for y, g in given.items()}
    fills = [make_op("ConstantFill", [y], [seeds[y]], device_option=device_option, value=1.0)
             for y, g in given.items() if g is None]
    needed = set(seeds)
    ever_needed = []
    for op in reversed(netdef.op):
        if not any(o in needed for o in op.output):
            continue
        schema = lookup(op.type, netdef.name)
        for o in op.output:
            if o not in op.input:  # an earlier version of `o` is dead before this op
                needed.discard(o)
        for position, name in enumerate(op.input):
            if schema.differentiable(position) and name not in needed:
                needed.add(name)
                ever_needed.append(name)
    wrt = [b for b in _forward_order(netdef, ever_needed) if b not in seeds]
    grad_op = make_op(AUTOGRAD_OP, list(seeds) + list(seeds.values()), [grad_name(b) for b in wrt],
                      wrt=wrt, num_losses=len(seeds))
    grad_op.is_gradient_op = True
    for op in fills:
        op.is_gradient_op = True
    netdef.op.extend(fills + [grad_op])
    grad_map = dict(seeds)
    grad_map.update({b: grad_name(b) for b in wrt})
    return grad_map


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


class Step:
    __slots__ = ("fn", "inputs", "outputs", "kwargs", "op", "index", "where")

    def __init__(self, fn, inputs, outputs, kwargs, op, index, where):
        self.fn, self.inputs, self.outputs, self.kwargs = fn, inputs, outputs, kwargs
        self.op, self.index, self.where = op, index, where


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
        for step_index, fwd in enumerate(self.netdef.op[:index]):
            for name in fwd.input:
                if name in wrt and name not in first_write and name not in leaves:
                    leaves.append(name)
            for position, name in enumerate(fwd.output):
                if name in wrt and name not in first_write and name not in leaves:
                    first_write[name] = (step_index, position)
        captures = {}
        for name, (step_index, position) in first_write.items():
            captures.setdefault(step_index, []).append((position, name))
        return dict(index=index, losses=losses, seeds=seeds, wrt=wrt, outputs=list(op.output),
                    leaves=leaves, captures=captures)

    def run(self):
        blobs = self.workspace.blobs
        if self.backward is None:
            with torch.no_grad():
                self._run_forward(blobs, None)
            return
        targets, injected = {}, {}
        for name in self.backward["leaves"]:
            value = blobs.get(name)
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                leaf = value.detach().requires_grad_(True)
                blobs[name] = injected[name] = targets[name] = leaf
        try:
            with torch.enable_grad():
                self._run_forward(blobs, targets)
            self._run_backward(blobs, targets)
        finally:
            for name, leaf in injected.items():  # the workspace keeps plain tensors
                if blobs.get(name) is leaf:
                    blobs[name] = leaf.detach()
        with torch.no_grad():
            self._run_updates(blobs)

    def _run_forward(self, blobs, targets):
        """The ops before the gradient op (all ops when there is none)."""
        stop = self.backward["index"] if self.backward else len(self.steps)
        self._run_steps(blobs, 0, stop, targets)

    def _run_updates(self, blobs):
        """The ops after the gradient op (optimizer updates), without autograd."""
        self._run_steps(blobs, self.backward["index"] + 1, len(self.steps), None)

    def _run_steps(self, blobs, start, stop, targets):
        captures = self.backward["captures"] if targets is not None else {}
        for step in self.steps[start:stop]:
            try:
                inputs = [blobs[name] for name in step.inputs]
            except KeyError:
                missing = next(n for n in step.inputs if n not in blobs)
                raise MissingBlobError(_missing_message(step.where, missing, blobs)) from None
            try:
                result = step.fn(*inputs, **step.kwargs)
            except Caffe2Error as e:
                raise type(e)("%s: %s" % (step.where, e)) from None
            except (RuntimeError, ValueError, TypeError, IndexError) as e:
                raise OperatorError("%s failed on inputs %s: %s" % (
                    step.where, _describe_inputs(step.inputs, inputs), str(e).strip())) from None
            if not isinstance(result, tuple):
                result = (result,) if result is not None else ()
            if len(result) < len(step.outputs):
                raise OperatorError("%s: produced %d outputs, the op asks for %d (%s)" % (
                    step.where, len(result), len(step.outputs), list(step.outputs)))
            for name, value in zip(step.outputs, result):
                blobs[name] = value
            if step.index in captures:
                for position, name in captures[step.index]:
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
        for loss_name, seed_name in zip(bw["losses"], bw["seeds"]):
            for name in (loss_name, seed_name):
                if name not in blobs:
                    raise MissingBlobError(_missing_message(
                        describe_op(self.name, bw["index"], self.netdef.op[bw["index"]]), name, blobs))
            loss = blobs[loss_name]
            if isinstance(loss, torch.Tensor) and loss.requires_grad:
                losses.append(loss)
                seeds.append(blobs[seed_name].to(loss.dtype).reshape(loss.shape))
        wanted = [(name, out) for name, out in zip(bw["wrt"], bw["outputs"])
                  if isinstance(targets.get(name), torch.Tensor) and targets[name].requires_grad]
        grads = [None] * len(wanted)
        if losses and wanted:
            grads = torch.autograd.grad(losses, [targets[n] for n, _ in wanted], seeds,
                                        allow_unused=True)
        for (name, out), grad in zip(wanted, grads):
            blobs[out] = torch.zeros_like(targets[name]) if grad is None else grad.detach()


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
