"""Real Caffe2 (py3.7) -> tests/data/caffe2_reference/gradient_ops.json: the gradient
OperatorDefs GradientRegistry.GetGradientForOp gives for some ops, and the values those
gradient ops compute on fixed inputs.

    PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python /work/c2venv/bin/python gen_gradient_ops.py
"""
import json
import os

import numpy as np
from caffe2.python import core, workspace

rng = np.random.RandomState(0)
X4 = rng.randn(2, 3, 5, 5).astype(np.float32)
CASES = [
    ("Relu", ["X"], ["Y"], {}, {"X": rng.randn(3, 4)}),
    ("Sigmoid", ["X"], ["Y"], {}, {"X": rng.randn(3, 4)}),
    ("Tanh", ["X"], ["Y"], {}, {"X": rng.randn(3, 4)}),
    ("Softmax", ["X"], ["Y"], {}, {"X": rng.randn(3, 4)}),
    ("LeakyRelu", ["X"], ["Y"], {"alpha": 0.2}, {"X": rng.randn(3, 4)}),
    ("Elu", ["X"], ["Y"], {"alpha": 0.7}, {"X": rng.randn(3, 4)}),
    ("Softsign", ["X"], ["Y"], {}, {"X": rng.randn(3, 4)}),
    ("Add", ["A", "B"], ["C"], {"broadcast": 1}, {"A": rng.randn(2, 3), "B": rng.randn(3)}),
    ("Mul", ["A", "B"], ["C"], {}, {"A": rng.randn(2, 3), "B": rng.randn(2, 3)}),
    ("Conv", ["X", "W", "b"], ["Y"], {"kernel": 3, "pad": 1},
     {"X": X4, "W": rng.randn(4, 3, 3, 3), "b": rng.randn(4)}),
    ("Conv", ["X", "W"], ["Y"], {"kernel": 3, "stride": 2}, {"X": X4, "W": rng.randn(4, 3, 3, 3)}),
    ("FC", ["X", "W", "b"], ["Y"], {}, {"X": rng.randn(4, 6), "W": rng.randn(5, 6), "b": rng.randn(5)}),
    ("MaxPool", ["X"], ["Y"], {"kernel": 2, "stride": 2}, {"X": X4}),
    ("AveragePool", ["X"], ["Y"], {"kernel": 3, "stride": 1, "pad": 1}, {"X": X4}),
    ("SpatialBN", ["X", "s", "b", "m", "v"], ["Y"], {"is_test": 1, "epsilon": 1e-3},
     {"X": X4, "s": rng.rand(3) + 0.5, "b": rng.randn(3), "m": rng.randn(3), "v": rng.rand(3) + 0.5}),
    ("SpatialBN", ["X", "s", "b", "m", "v"], ["Y", "m", "v", "sm", "siv"], {"is_test": 0, "epsilon": 1e-3},
     {"X": X4, "s": rng.rand(3) + 0.5, "b": rng.randn(3), "m": np.zeros(3), "v": np.ones(3)}),
    ("SoftmaxWithLoss", ["X", "L"], ["P", "loss"], {}, {"X": rng.randn(4, 5), "L": np.array([0, 3, 4, 1], np.int32)}),
    ("Max", ["A", "B"], ["Y"], {}, {"A": np.array([1., 2., 3.]), "B": np.array([3., 2., 1.])}),
    ("Concat", ["A", "B"], ["C", "info"], {"axis": 1}, {"A": rng.randn(2, 3), "B": rng.randn(2, 2)}),
    ("Transpose", ["X"], ["Y"], {"axes": [1, 2, 0]}, {"X": rng.randn(2, 3, 4)}),
    ("ReduceFrontSum", ["X"], ["Y"], {"num_reduce_dim": 1}, {"X": rng.randn(3, 4)}),
    ("ReduceMean", ["X"], ["Y"], {"axes": [1], "keepdims": 0}, {"X": rng.randn(3, 4)}),
    ("WeightedSum", ["X0", "w0", "X1", "w1"], ["Y"], {},
     {"X0": rng.randn(3), "w0": np.array([0.5]), "X1": rng.randn(3), "w1": np.array([2.0])}),
    ("Sum", ["A", "B"], ["C"], {}, {"A": rng.randn(3), "B": rng.randn(3)}),
    ("Sqr", ["X"], ["Y"], {}, {"X": rng.randn(3)}),
    ("Dropout", ["X"], ["Y"], {"is_test": 1}, {"X": rng.randn(3)}),
]


def op_json(op):
    return {"type": op.type, "input": list(op.input), "output": list(op.output),
            "args": sorted(a.name for a in op.arg)}


def main():
    records = []
    for op_type, inputs, outputs, args, feeds in CASES:
        workspace.ResetWorkspace()
        op = core.CreateOperator(op_type, inputs, outputs, **args)
        for name, value in feeds.items():
            workspace.FeedBlob(name, np.asarray(value, dtype=np.int32 if value.dtype == np.int32 else np.float32))
        workspace.RunOperatorOnce(op)
        g_output = [o + "_grad" for o in outputs]
        grad_ops, g_input = core.GradientRegistry.GetGradientForOp(op, g_output)
        seeds = {}
        for o, g in zip(outputs, g_output):
            if any(g in gop.input for gop in grad_ops):
                seeds[g] = np.asarray(rng.randn(*workspace.FetchBlob(o).shape), dtype=np.float32)
                workspace.FeedBlob(g, seeds[g])
        workspace.RunOperatorsOnce(grad_ops)
        grads = {str(g): workspace.FetchBlob(str(g)).tolist() for g in g_input if g is not None
                 and workspace.HasBlob(str(g))}
        records.append({"op": op_json(op), "args": args,
                        "feeds": {k: np.asarray(v).tolist() for k, v in feeds.items()},
                        "seeds": {k: v.tolist() for k, v in seeds.items()},
                        "grad_ops": [op_json(g) for g in grad_ops],
                        "g_input": [None if g is None else str(g) for g in g_input],
                        "grads": grads})
    out = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gradient_ops.json")
    with open(out, "w") as f:
        json.dump(records, f)
    print("wrote", out, len(records))


if __name__ == "__main__":
    main()
