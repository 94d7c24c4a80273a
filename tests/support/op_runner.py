"""Run one registered op on torch tensors, as the executor would (arguments parsed from an
OperatorDef, `prepare` applied, a context for ops that ask for one), so tests can use autograd."""
import torch

from food101.caffe2 import core, executor, workspace
from food101.caffe2.ops import registry
from food101.caffe2.proto import caffe2_pb2


def run_op(op_type, inputs, num_outputs=1, **args):
    """inputs: a list of tensors (fed as blobs "in0", "in1", ...); returns the op's result."""
    op = caffe2_pb2.OperatorDef(type=op_type, input=["in%d" % i for i in range(len(inputs))],
                                output=["out%d" % i for i in range(num_outputs)])
    op.arg.extend(core.MakeArgument(k, v) for k, v in args.items())
    schema = registry.lookup(op_type)
    kwargs = registry.parse_arguments(schema, op)
    if schema.context:
        kwargs["ctx"] = executor.OpContext(workspace.current(), torch.device("cpu"), op, "test", 0)
    return schema.fn(*inputs, **kwargs)


def grad_of(output, inputs, grad_output=None):
    """d(sum(output * grad_output)) / d(each input)."""
    if grad_output is None:
        grad_output = torch.ones_like(output)
    return torch.autograd.grad(output, inputs, grad_output, allow_unused=True)
