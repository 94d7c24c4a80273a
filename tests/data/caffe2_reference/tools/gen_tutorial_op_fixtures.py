"""Ops the Caffe2 tutorials use that the original fixtures did not cover, run by real Caffe2.

    PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python python gen_tutorial_op_fixtures.py OUTDIR

For each case: inputs, the forward output and the gradient of the inputs for loss =
sum(output * G) (G fed as the output's gradient), from real Caffe2's gradient operators.
Writes OUTDIR/cases.npz (keys "<case>/in:<blob>", "<case>/out", "<case>/gradin", "<case>/grad:<blob>")
and OUTDIR/cases.json (op type, inputs, args per case).
"""
import json
import os
import sys

import numpy as np
from caffe2.python import core, workspace

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
rs = np.random.RandomState(1414)
arrays, index = {}, {}


def case(name, op_type, inputs, **args):
    workspace.ResetWorkspace()
    net = core.Net(name)
    for blob, value in inputs.items():
        workspace.FeedBlob(blob, value)
        arrays["%s/in:%s" % (name, blob)] = value
    out = getattr(net, op_type)(list(inputs), "out", **args)
    output_shape = None
    workspace.RunNetOnce(net)
    output = workspace.FetchBlob("out")
    gradin = rs.randn(*output.shape).astype(np.float32)
    grad_net = core.Net(name + "_grad")
    grad_net.Proto().op.extend(net.Proto().op)
    grad_map = grad_net.AddGradientOperators({out: "out_gradin"})
    workspace.FeedBlob("out_gradin", gradin)
    workspace.RunNetOnce(grad_net)
    arrays["%s/out" % name] = output
    arrays["%s/gradin" % name] = gradin
    for blob in inputs:
        if grad_map.get(blob) is not None and workspace.HasBlob(str(grad_map[blob])):
            arrays["%s/grad:%s" % (name, blob)] = workspace.FetchBlob(str(grad_map[blob]))
    index[name] = {"op_type": op_type, "inputs": list(inputs), "args": args}


X, Y = rs.randn(4, 3, 2).astype(np.float32), rs.randn(4, 3, 2).astype(np.float32)
case("squared_l2_3d", "SquaredL2Distance", {"X": X, "Y": Y})
case("squared_l2_1d", "SquaredL2Distance", {"X": X[:, 0, 0].copy(), "Y": Y[:, 0, 0].copy()})
case("l1", "L1Distance", {"X": X.reshape(4, 6), "Y": Y.reshape(4, 6)})
case("dot", "DotProduct", {"X": X.reshape(4, 6), "Y": Y.reshape(4, 6)})
Z = X.reshape(4, 6).copy()
Z[1] = 0.0
case("cosine", "CosineSimilarity", {"X": Z, "Y": Y.reshape(4, 6)})
A, B = rs.randn(3, 4).astype(np.float32), rs.randn(4, 5).astype(np.float32)
case("matmul", "MatMul", {"A": A, "B": B})
case("matmul_trans_b", "MatMul", {"A": A, "B": B.T.copy()}, trans_b=1)
case("matmul_axis", "MatMul", {"A": rs.randn(3, 2, 2).astype(np.float32), "B": rs.randn(4, 1, 5).astype(np.float32)}, axis_b=1)
case("matmul_trans_a", "MatMul", {"A": A.T.copy(), "B": B}, trans_a=1)
np.savez(os.path.join(OUT, "cases.npz"), **arrays)
with open(os.path.join(OUT, "cases.json"), "w") as fh:
    json.dump(index, fh, indent=1, sort_keys=True)
print("wrote", sorted(index))
