"""Building If / While ops from nets (caffe2.python.control_ops_util).

    add_if_op(net, cond, lexical_scope, then_net, else_net=None)
    add_while_op(net, cond, lexical_scope, loop_body_net, condition_body_net=None)

`lexical_scope` names the outer blobs the branches may see. A branch blob is outer when its name
is in the scope or the branch reads it before writing it; every other blob is local to the
branch's own workspace. Each branch runs through a `Do` op (ops/control.py) over a CreateScope
workspace blob, which binds the outer blobs by name and keeps the local ones inside.
"""
from food101.caffe2 import core


def get_external_blob_names(net, lexical_scope):
    """(blobs `net` reads before writing, blobs it writes that are in `lexical_scope`); every
    blob read must be in the scope."""
    proto = net.Proto()
    ssa, _ = core.get_ssa(proto)
    inputs = core.get_undefined_blobs(ssa)
    for name in inputs:
        assert str(name) in lexical_scope, "Input blob " + name + " is undefined"
    outputs = {o for op in proto.op for o in op.output if o in lexical_scope}
    return inputs, outputs


def _refs(names):
    return [core.BlobReference(name=b, net=None) for b in names]


def _do_net(name, subnet, input_names, output_names, workspace_blob, **do_args):
    """A net holding one Do op that runs `subnet` with the given outer blobs bound."""
    inputs, outputs = _refs(input_names), _refs(output_names)
    ordered = [str(b) for b in inputs + outputs]
    outer = list(set(input_names) | set(output_names))
    do_net = core.Net(name)
    do_net.Do(inputs + [workspace_blob], outputs + [workspace_blob], net=subnet.Proto(),
              inner_blobs=outer, outer_blobs_idx=[ordered.index(b) for b in outer], **do_args)
    do_net.AddExternalOutput(*(outputs + [workspace_blob]))
    return do_net


def add_if_op(if_net, cond_blob, lexical_scope, then_net, else_net=None):
    """Append to `if_net` an If op running `then_net` when `cond_blob` holds, else `else_net`."""
    branches = [("then", then_net)] + ([("else", else_net)] if else_net else [])
    if_inputs, if_outputs, if_args, scopes = [cond_blob], [], {}, []
    all_in, all_out = set(), set()
    prepared = []
    for label, net in branches:
        ins, outs = get_external_blob_names(net, lexical_scope)
        all_in |= ins
        all_out |= outs
        prepared.append((label, net, ins, outs))
    if_inputs += _refs(all_in)
    if_outputs += _refs(all_out)
    for label, net, ins, outs in prepared:
        ws = if_net.NextScopedBlob(if_net.Name() + "/workspace_if_" + label)
        if_args[label + "_net"] = _do_net("do_%s_net" % label, net, ins, outs, ws).Proto()
        if_inputs.append(ws)
        if_outputs.append(ws)
        scopes.append(ws)
    for ws in scopes:
        if_net.CreateScope([], [ws])
    if_net.If(if_inputs, if_outputs, **if_args)
    if_net.AddExternalOutput(*if_outputs)


def add_while_op(while_net, cond_blob, lexical_scope, loop_body_net, condition_body_net=None):
    """Append to `while_net` a While op running `loop_body_net` while `cond_blob` holds;
    `condition_body_net`, if given, recomputes the condition (its ops must write cond_blob)
    before the first iteration and after each."""
    ins, outs = get_external_blob_names(loop_body_net, lexical_scope)
    ins |= outs
    while_inputs = [cond_blob] + _refs(ins)
    while_outputs = _refs(outs)
    body_ws = while_net.NextScopedBlob(while_net.Name() + "/workspace_loop_body")
    while_args = {"loop_net": _do_net("do_loop_body_net", loop_body_net, ins, outs, body_ws,
                                      copy_external_blobs=True).Proto()}
    while_inputs.append(body_ws)
    while_outputs.append(body_ws)
    cond_ws = None
    if condition_body_net:
        cond_ins, cond_outs = get_external_blob_names(condition_body_net, lexical_scope)
        assert any(str(cond_blob) in op.output for op in condition_body_net.Proto().op), (
            "Condition net does not write into condition blob")
        cond_outs.add(str(cond_blob))
        cond_ws = while_net.NextScopedBlob(while_net.Name() + "/workspace_loop_cond")
        while_args["cond_net"] = _do_net("do_loop_condition_net", condition_body_net, cond_ins,
                                         cond_outs, cond_ws).Proto()
        while_inputs += [b for b in _refs(cond_ins) if str(b) not in ins] + [cond_ws]
        while_outputs += [b for b in _refs(cond_outs) if str(b) not in outs] + [cond_ws]
        if str(cond_blob) not in lexical_scope:
            while_net.ConstantFill([], cond_blob, dtype=core.DataType.BOOL, value=False)
    while_net.CreateScope([], [body_ws])
    if cond_ws:
        while_net.CreateScope([], [cond_ws])
    while_net.While(while_inputs, while_outputs, **while_args)
    while_net.AddExternalOutput(*while_outputs)
