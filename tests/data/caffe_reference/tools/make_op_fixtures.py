"""Forward fixtures, made by REAL Caffe2, for the ops model import adds (PadImage,
ResizeNearest, HardSigmoid, ConvTranspose, ReduceMean).

    /work/c2venv/bin/python tests/data/caffe_reference/tools/make_op_fixtures.py

Writes tests/data/caffe_reference/ops/<case>.pb (a NetDef of the one op) and <case>.npz
(`in:X` fed, `out:Y` expected), in the format of caffe2_reference/ops/.
"""
import os

# grpcio-tools brings a protobuf newer than Caffe2's generated code accepts in C++ mode
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")


import numpy as np
from caffe2.python import core, workspace

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ops")
rng = np.random.RandomState(18)
X = rng.randn(2, 3, 5, 4).astype(np.float32)

CASES = {
    "padimage_constant": ("PadImage", {"X": X}, ["Y"], dict(pad_t=1, pad_l=2, pad_b=0, pad_r=3, value=0.5)),
    "padimage_reflect": ("PadImage", {"X": X}, ["Y"], dict(pad=2, mode="reflect")),
    "padimage_edge": ("PadImage", {"X": X}, ["Y"], dict(pad_t=0, pad_l=1, pad_b=2, pad_r=1, mode="edge")),
    "resize_nearest_x2": ("ResizeNearest", {"X": X}, ["Y"], dict(width_scale=2.0, height_scale=2.0)),
    "resize_nearest_x1_5": ("ResizeNearest", {"X": X}, ["Y"], dict(width_scale=1.5, height_scale=1.6)),
    "hard_sigmoid": ("HardSigmoid", {"X": X * 4}, ["Y"], dict(alpha=1.0 / 6, beta=0.5)),
    "conv_transpose_s2p1": ("ConvTranspose", {"X": X, "W": rng.randn(3, 2, 3, 3).astype(np.float32),
                                              "b": rng.randn(2).astype(np.float32)},
                            ["Y"], dict(kernel=3, stride=2, pad=1, order="NCHW")),
    "conv_transpose_adj": ("ConvTranspose", {"X": X, "W": rng.randn(3, 4, 2, 2).astype(np.float32),
                                             "b": rng.randn(4).astype(np.float32)},
                           ["Y"], dict(kernel=2, stride=3, adj=1, order="NCHW")),
    "reduce_mean_hw": ("ReduceMean", {"X": X}, ["Y"], dict(axes=[2, 3], keepdims=1)),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for case, (op_type, inputs, outputs, args) in CASES.items():
        op = core.CreateOperator(op_type, list(inputs), outputs, **args)
        net = core.Net(case)
        net.Proto().op.extend([op])
        workspace.ResetWorkspace()
        for name, value in inputs.items():
            workspace.FeedBlob(name, value)
        workspace.RunNetOnce(net)
        data = {"in:" + k: v for k, v in inputs.items()}
        data.update({"out:" + k: workspace.FetchBlob(k) for k in outputs})
        np.savez_compressed(os.path.join(OUT, case + ".npz"), **data)
        with open(os.path.join(OUT, case + ".pb"), "wb") as f:
            f.write(net.Proto().SerializeToString())
        print(case, {k: v.shape for k, v in data.items()})


if __name__ == "__main__":
    main()
