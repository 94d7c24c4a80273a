"""Real Caffe2 (py3.7) -> tests/data/caffe2_reference/more_ops.json: outputs of ops added for
Caffe2's own test suite (ConvTranspose, LpPool, losses, Slice, ...) on fixed inputs.

    PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python /work/c2venv/bin/python gen_more_ops.py
"""
import json
import os

import numpy as np
from caffe2.python import core, workspace

rng = np.random.RandomState(1)
f32 = lambda *s: rng.randn(*s).astype(np.float32)  # noqa: E731
CASES = [
    ("ConvTranspose", {"X": f32(2, 3, 4, 4), "W": f32(3, 2, 3, 3), "b": f32(2)}, ["Y"],
     {"kernel": 3, "stride": 2, "pad": 1, "adj": 1}),
    ("ConvTranspose", {"X": f32(1, 4, 4, 2), "W": f32(2, 3, 3, 5)}, ["Y"],
     {"kernel": 3, "stride": 1, "pad_t": 0, "pad_b": 1, "pad_l": 1, "pad_r": 0, "order": "NHWC"}),
    ("LpPool", {"X": f32(2, 3, 5, 5)}, ["Y"], {"kernel": 2, "stride": 2, "p": 2.0}),
    ("LpPool", {"X": f32(1, 2, 4, 4)}, ["Y"], {"kernel": 3, "stride": 1, "pad": 1, "p": 3.0}),
    ("SigmoidCrossEntropyWithLogits", {"X": f32(3, 4), "T": rng.rand(3, 4).astype(np.float32)}, ["Y"], {}),
    ("WeightedSigmoidCrossEntropyWithLogits", {"X": f32(3, 4), "T": rng.rand(3, 4).astype(np.float32),
                                               "w": rng.rand(3, 4).astype(np.float32)}, ["Y"], {}),
    ("CrossEntropy", {"X": rng.rand(3, 4).astype(np.float32), "L": rng.rand(3, 4).astype(np.float32)}, ["Y"], {}),
    ("SpatialSoftmaxWithLoss", {"X": f32(2, 3, 2, 2), "L": rng.randint(0, 3, (2, 2, 2)).astype(np.int32)},
     ["P", "loss"], {}),
    ("SpatialSoftmaxWithLoss", {"X": f32(2, 3, 2, 2), "L": rng.randint(0, 3, (2, 2, 2)).astype(np.int32),
                                "w": rng.rand(2, 2, 2).astype(np.float32)}, ["P", "loss"], {}),
    ("Slice", {"X": f32(4, 5, 6)}, ["Y"], {"starts": [0, 1, 0], "ends": [-1, -2, -1]}),
    ("DiagonalFill", {}, ["Y"], {"shape": [3, 4], "value": 2.5}),
    ("LengthsRangeFill", {"L": np.array([2, 0, 3], np.int32)}, ["Y"], {}),
    ("SplitByLengths", {"X": f32(2, 6), "L": np.array([1, 2, 0, 3], np.int32)}, ["A", "B"], {}),
    ("SumReduceLike", {"A": f32(2, 3, 4), "B": f32(3, 1)}, ["Y"], {"axis": 1}),
    ("EQ", {"A": np.array([[1, 2], [3, 4]], np.int32), "B": np.array([1, 4], np.int32)}, ["Y"], {"broadcast": 1}),
    ("Softsign", {"X": f32(3, 4)}, ["Y"], {}),
    ("Cbrt", {"X": f32(5)}, ["Y"], {}),
    ("ReduceL2", {"X": f32(3, 4)}, ["Y"], {"axes": [1], "keepdims": 0}),
    ("Range", {"a": np.array(2, np.int32), "b": np.array(11, np.int32), "c": np.array(3, np.int32)}, ["Y"], {}),
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
                        "outputs": {o: [workspace.FetchBlob(o).tolist(), str(workspace.FetchBlob(o).dtype)]
                                    for o in outputs}})
    out = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "more_ops.json")
    with open(out, "w") as f:
        json.dump(records, f)
    print("wrote", out, len(records))


# optimizer update ops (appended to the same fixture by main_optim)
OPTIM_CASES = [
    ("Ftrl", {"w": f32(3, 2), "nz": np.abs(f32(3, 2, 2)), "g": f32(3, 2)}, ["w", "nz"],
     {"alpha": 0.1, "beta": 1.0, "lambda1": 0.01, "lambda2": 0.02}),
    ("SparseFtrl", {"w": f32(4, 2), "nz": np.abs(f32(4, 2, 2)), "i": np.array([2, 0], np.int64),
                    "g": f32(2, 2)}, ["w", "nz"], {"alpha": 0.1, "beta": 1.0, "lambda1": 0.01, "lambda2": 0.02}),
    ("RmsProp", {"g": f32(5), "ms": np.abs(f32(5)), "mom": f32(5), "lr": np.array([0.1], np.float32)},
     ["go", "ms", "mom"], {"decay": 0.9, "momentum": 0.5, "epsilon": 1e-5}),
    ("Adadelta", {"p": f32(5), "m": np.abs(f32(5)), "d": np.abs(f32(5)), "g": f32(5),
                  "lr": np.array([-0.1], np.float32)}, ["p", "m", "d"], {"epsilon": 1e-4, "decay": 0.9}),
    ("Wngrad", {"p": f32(5), "b": np.array([3.0], np.float32), "g": f32(5),
                "lr": np.array([-0.1], np.float32)}, ["p", "b"], {"epsilon": 1e-5}),
]
CASES.extend(OPTIM_CASES)


if __name__ == "__main__":
    main()
