"""caffe2.python.utils' numpy <-> TensorProto conversions as real Caffe2 makes them.

    PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python python gen_utils_fixtures.py OUTDIR

OUTDIR/utils_tensors.pb: a TensorProtos of NumpyArrayToCaffe2Tensor(array, name) for each
array in OUTDIR/utils_arrays.npz; OUTDIR/utils_roundtrip.npz: Caffe2TensorToNumpyArray of each.
"""
import os
import sys

import numpy as np
from caffe2.proto import caffe2_pb2
from caffe2.python import utils

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
rs = np.random.RandomState(7)
ARRAYS = {
    "f32": rs.randn(2, 3).astype(np.float32),
    "f64": rs.randn(3),
    "i64_labels": np.array([0, 2, 1]),               # Iris labels: np.int -> INT32
    "i32": np.array([[1, -5]], dtype=np.int32),
    "i16": np.array([-300, 7], dtype=np.int16),
    "u16": np.array([60000], dtype=np.uint16),
    "i8": np.array([-128, 5], dtype=np.int8),
    "u8": np.array([[255, 0, 3]], dtype=np.uint8),
    "scalar": np.float32(1.5) * np.ones((), dtype=np.float32),
}
protos = caffe2_pb2.TensorProtos()
roundtrip = {}
for name, array in ARRAYS.items():
    tensor = utils.NumpyArrayToCaffe2Tensor(array, name)
    protos.protos.extend([tensor])
    roundtrip[name] = utils.Caffe2TensorToNumpyArray(tensor)
np.savez(os.path.join(OUT, "utils_arrays.npz"), **ARRAYS)
np.savez(os.path.join(OUT, "utils_roundtrip.npz"), **roundtrip)
with open(os.path.join(OUT, "utils_tensors.pb"), "wb") as fh:
    fh.write(protos.SerializeToString())
print("wrote", len(ARRAYS), "tensors")
