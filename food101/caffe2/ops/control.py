"""Control-flow ops: If, While, Do and the workspace scopes Do runs in (CreateScope, HasScope).

    CreateScope [] -> [ws]                     ws: a stack of child workspaces (a blob)
    Do [in..., ws] -> [out..., ws]  net=N      run N in a child workspace where the names
                                               `inner_blobs` are the Do's own inputs/outputs
                                               (`outer_blobs_idx` into inputs + outputs, the ws
                                               blob excluded); other blobs of N stay inside
    If [cond, in...] -> [out...]     then_net / else_net run in the current workspace
    While [cond, in...] -> [out...]  cond_net (if any) before the first and after every
                                     loop_net run; loops while cond holds

control_ops_util.add_if_op / add_while_op build these nets. Subnets run under the caller's
autograd mode (PreparedNet.run_nested), so gradients of an outer net flow through the branch
taken; Caffe2's separate gradient ops (DoGradient, ...) are not built.
"""
import torch

from food101.caffe2.child_workspace import child_workspace
from food101.caffe2.errors import enforce
from food101.caffe2.ops.registry import operator


class WorkspaceStack:
    """The value of a CreateScope blob: the child workspaces Do runs in, innermost last."""

    def __init__(self):
        self.workspaces = []

    def __repr__(self):
        return "<WorkspaceStack of %d>" % len(self.workspaces)


def _truth(cond, op_type):
    enforce(isinstance(cond, torch.Tensor) and cond.numel() == 1,
            "%s: the condition must be a scalar (one-element) tensor, got %s", op_type,
            tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__)
    return bool(cond.reshape(-1)[0])


def _run_net(netdef, store):
    from food101.caffe2.executor import PreparedNet  # executor imports the op registry
    PreparedNet(netdef, store).run_nested()


def _outputs(ctx, names):
    """The op's outputs as the subnet left them (an output nothing wrote is empty, as the
    blob Caffe2 creates for every output)."""
    blobs = ctx.workspace.blobs
    return tuple(blobs[name] if name in blobs else torch.empty(0) for name in names)


@operator("CreateScope", grad_inputs=())
def create_scope():
    return WorkspaceStack()


@operator("HasScope", grad_inputs=())
def has_scope(stack):
    return torch.tensor(bool(stack.workspaces))


@operator("Do", context=True)
def do(*inputs, net=None, inner_blobs=(), outer_blobs_idx=(), saved_fwd_blobs=(),
       reuse_workspace=0, copy_external_blobs=0, ctx):
    enforce(net is not None, "Do needs a `net` argument (the NetDef to run)")
    enforce(len(inner_blobs) == len(outer_blobs_idx),
            "Do: %d inner_blobs but %d outer_blobs_idx", len(inner_blobs), len(outer_blobs_idx))
    stack = inputs[-1] if inputs else None
    enforce(isinstance(stack, WorkspaceStack),
            "Do: the last input must be a workspace blob made by CreateScope, got %s",
            type(stack).__name__)
    op = ctx.op
    outer_names = list(op.input[:-1]) + list(op.output[:-1])
    bindings = {inner: outer_names[index] for inner, index in zip(inner_blobs, outer_blobs_idx)}
    if reuse_workspace and stack.workspaces:
        child = stack.workspaces[-1]
    else:
        child = child_workspace(ctx.workspace, bindings, name="Do")
        stack.workspaces.append(child)
    try:
        _run_net(net, child)
    finally:
        if not reuse_workspace:
            stack.workspaces.pop()
    return _outputs(ctx, op.output[:-1]) + (stack,)


@operator("If", context=True)
def if_op(cond, *inputs, then_net=None, else_net=None, ctx):
    enforce(then_net is not None, "If needs a `then_net` argument")
    branch = then_net if _truth(cond, "If") else else_net
    if branch is not None:
        _run_net(branch, ctx.workspace)
    return _outputs(ctx, ctx.op.output)


@operator("While", context=True)
def while_op(cond, *inputs, loop_net=None, cond_net=None, ctx):
    enforce(loop_net is not None, "While needs a `loop_net` argument")
    cond_name = ctx.op.input[0]
    if cond_net is not None:
        _run_net(cond_net, ctx.workspace)
    while _truth(ctx.workspace.blobs[cond_name], "While"):
        _run_net(loop_net, ctx.workspace)
        if cond_net is not None:
            _run_net(cond_net, ctx.workspace)
    return _outputs(ctx, ctx.op.output)
