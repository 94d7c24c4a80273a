"""Real Caffe2 (py3.7) -> tests/data/caffe2_reference/optim_ops.json: outputs of the sparse
update ops, Lars, GFtrl, Gather and Mul's legacy broadcast of a one-element B on fixed inputs
(indices repeat, as Caffe2's optimizer tests feed them), and of the ops hypothesis_test.py
needs (DotProductWithPadding, SpaceToBatch, InstanceNorm, segment/lengths ops, ...).

    PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python /work/c2venv/bin/python gen_optim_ops.py
"""
import json
import os

import numpy as np
from caffe2.python import core, workspace

rng = np.random.RandomState(0)
f32 = lambda *s: rng.randn(*s).astype(np.float32)  # noqa: E731
pos = lambda *s: (np.abs(rng.randn(*s)) + 0.1).astype(np.float32)  # noqa: E731
one = lambda v: np.array([v], np.float32)  # noqa: E731
IDX = np.array([1, 3, 1, 0, 1], np.int64)

CASES = [
    ("ScatterWeightedSum", {"X0": f32(4, 3), "w0": one(1.0), "I": IDX, "X1": f32(5, 3),
                            "w1": one(-0.5)}, ["X0"], {}),
    ("ScatterWeightedSum", {"X0": f32(4, 3), "w0": one(0.7), "I": IDX, "X1": f32(5, 3),
                            "w1": one(-0.5)}, ["X0"], {}),
    ("SparseMomentumSGDUpdate", {"g": f32(5, 3), "m": f32(4, 3), "lr": one(0.1), "p": f32(4, 3),
                                 "I": IDX}, ["g", "m", "p"], {"momentum": 0.9, "nesterov": 1}),
    ("SparseMomentumSGDUpdate", {"g": f32(5, 3), "m": f32(4, 3), "lr": one(0.1), "p": f32(4, 3),
                                 "I": IDX}, ["g", "m", "p"], {"momentum": 0.9, "nesterov": 0}),
    ("SparseAdagrad", {"p": f32(4, 3), "m": pos(4, 3), "I": IDX, "g": f32(5, 3),
                       "lr": one(-0.1)}, ["p", "m"], {"epsilon": 1e-4}),
    ("RowWiseSparseAdagrad", {"p": f32(4, 3), "m": pos(4), "I": IDX, "g": f32(5, 3),
                              "lr": one(-0.1)}, ["p", "m"], {"epsilon": 1e-4}),
    ("SparseAdam", {"p": f32(4, 3), "m1": f32(4, 3), "m2": pos(4, 3), "I": IDX, "g": f32(5, 3),
                    "lr": one(-0.1), "it": np.array([3], np.int64)}, ["p", "m1", "m2"],
     {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-4}),
    ("SparseAdam", {"p": f32(4, 3), "m1": f32(4, 3), "m2": pos(4, 3), "I": np.array([2, 0]),
                    "g": f32(2, 3), "lr": one(-0.1), "it": np.array([3], np.int64)},
     ["p", "m1", "m2", "eg"], {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-4}),
    ("SparseAdam", {"p": f32(4, 3), "m1": f32(4, 3), "m2": pos(4, 3), "I": IDX, "g": f32(5, 3),
                    "lr": one(-0.1), "it": np.array([3], np.int64)}, ["p", "m1", "m2"],
     {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-4, "enableRAdam": True}),
    ("SparseAdam", {"p": f32(4, 3), "m1": f32(4, 3), "m2": pos(4, 3), "I": IDX, "g": f32(5, 3),
                    "lr": one(-0.1), "it": np.array([50], np.int64)}, ["p", "m1", "m2"],
     {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-4, "enableRAdam": True}),
    ("SparseAdadelta", {"p": f32(4, 3), "m": pos(4, 3), "d": pos(4, 3), "I": IDX,
                        "g": f32(5, 3), "lr": one(-0.1)}, ["p", "m", "d"],
     {"epsilon": 1e-4, "decay": 0.9}),
    ("SparseWngrad", {"p": f32(4, 3), "b": one(2.5), "I": IDX, "g": f32(5, 3), "lr": one(-0.1)},
     ["p", "b"], {"epsilon": 1e-4}),
    ("Lars", {"p": f32(4, 3), "g": f32(4, 3), "wd": one(0.01), "tr": one(0.5), "lm": one(2.0)},
     ["o"], {"offset": 0.3, "lr_min": 0.0}),
    ("Lars", {"p": np.zeros(5, np.float32), "g": f32(5), "wd": one(0.1), "tr": one(0.5),
              "lm": one(0.3)}, ["o"], {}),
    ("Lars", {"p": f32(5), "g": 100 * f32(5), "wd": one(0.0), "tr": one(0.001), "lm": one(1.0)},
     ["o"], {}),
    ("GFtrl", {"p": f32(4, 3), "nz": pos(4, 3, 2), "g": f32(4, 3)}, ["p", "nz"],
     {"alpha": 0.5, "beta": 0.1, "lambda1": 0.4, "lambda2": 0.1}),
    ("GFtrl", {"p": f32(2, 3, 2), "nz": pos(2, 3, 2, 2), "g": f32(2, 3, 2)}, ["p", "nz"],
     {"alpha": 0.1, "beta": 1.0, "lambda1": 1.5, "lambda2": 0.01}),
    ("Gather", {"D": f32(4, 3), "I": np.array([[1, -1], [0, 2]], np.int32)}, ["o"], {}),
    ("Gather", {"D": f32(2, 3, 4), "I": np.array([2, 0], np.int64)}, ["o"], {"axis": 1}),
    ("Mul", {"A": np.array(2.0, np.float32), "B": one(3.0)}, ["C"], {"broadcast": 1}),
    ("Mul", {"A": f32(2, 3), "B": np.full((1, 1, 1), 3.0, np.float32)}, ["C"], {"broadcast": 1}),
    # hypothesis_test.py's ops
    ("HasElements", {"x": np.zeros((0, 3), np.float32), "y": f32(2)}, ["o"], {}),
    ("IsEmpty", {"x": f32(2, 0)}, ["o"], {}),
    ("SpaceToBatch", {"X": f32(2, 3, 4, 6)}, ["Y"], {"pad": 1, "block_size": 2}),
    ("BatchToSpace", {"X": f32(9, 2, 3, 2)}, ["Y"], {"pad": 2, "block_size": 3}),
    ("DotProductWithPadding", {"X": f32(3, 4), "Y": f32(3, 7)}, ["o"], {"pad_value": 0.3}),
    ("DotProductWithPadding", {"X": f32(3, 2), "Y": f32(3, 7)}, ["o"], {"replicate": 1}),
    ("InstanceNorm", {"X": f32(2, 4, 5, 3), "s": f32(3), "b": f32(3)}, ["Y", "m", "i"],
     {"epsilon": 1e-3, "order": "NHWC"}),
    ("AccumulateHistogram", {"X": np.array([0.1, 0.3, 0.5, 0.7, 0.9, 0.0999, 0.8999], np.float32)},
     ["c", "a"], {"lower_bound": 0.1, "upper_bound": 0.9, "num_buckets": 4}),
    ("Unique", {"x": np.array([3, 1, 3, 2, 1], np.int64)}, ["u", "r"], {}),
    ("SegmentIdsToLengths", {"s": np.array([0, 0, 2, 2, 2, 5], np.int32)}, ["l"], {}),
    ("SegmentIdsToRanges", {"s": np.array([0, 0, 2, 2, 2, 5], np.int32)}, ["l"], {}),
    ("LengthsToSegmentIds", {"s": np.array([2, 0, 3], np.int32)}, ["l"], {}),
    ("LengthsToWeights", {"s": np.array([2, 0, 3, 1], np.int32)}, ["l"], {"power": 0.3}),
    ("MultiClassAccuracy", {"p": np.array([[.1, .9, 0, 0], [.8, .1, .1, 0], [.2, .3, .5, 0],
                                           [.5, .4, 0, 0]], np.float32),
                            "l": np.array([1, 1, 2, 0], np.int32)}, ["a", "n"], {}),
    ("RowMul", {"a": f32(3, 2, 2), "b": f32(3)}, ["y"], {}),
]


def main():
    records = []
    for op_type, feeds, outputs, args in CASES:
        workspace.ResetWorkspace()
        for name, value in feeds.items():
            workspace.FeedBlob(name, value)
        workspace.RunOperatorOnce(core.CreateOperator(op_type, list(feeds), outputs, **args))
        records.append({"type": op_type, "args": args,
                        "feeds": {k: [v.tolist(), str(v.dtype)] for k, v in feeds.items()},
                        "outputs": {o: [workspace.FetchBlob(o).tolist(),
                                        str(workspace.FetchBlob(o).dtype)] for o in outputs}})
    out = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "optim_ops.json")
    with open(out, "w") as f:
        json.dump(records, f)
    print("wrote", out, len(records))


if __name__ == "__main__":
    main()
