"""Save/Load, minidb/lmdb and predictor-export fixtures written by real Caffe2.

Run with the venv that setup.sh makes (protobuf 4 needs the pure-Python backend for the
wheel's generated modules):

    PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python python gen_serialization_fixtures.py OUTDIR

Writes into OUTDIR (tests/data/caffe2_reference/serialization):
  blobs.npz, blobs_strings.json   the blobs that were saved (numeric / string ones)
  dtypes.minidb                   Save of those blobs (one chunk each; the wheel has no lmdb DB)
  chunked.minidb                  Save with chunk_size=4 (several chunks per tensor) + empty tensor
  ckpt_4.minidb                   Checkpoint at iteration 4 with every=2 (ckpt_%d.minidb)
  small_predictor.minidb          predictor_exporter.save_to_db of a Conv+SpatialBN+FC+Softmax net
  small_mobile_init.pb, small_mobile_predict.pb   mobile_exporter.Export of the same net
  small_io.npz                    its input and softmax output (real Caffe2 Predictor)
"""
import json
import os
import sys

import numpy as np
from caffe2.proto import caffe2_pb2
from caffe2.python import brew, core, model_helper, workspace
from caffe2.python.predictor import mobile_exporter, predictor_exporter

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
rs = np.random.RandomState(14)


def path(name):
    return os.path.join(OUT, name)


def save(blobs, db, db_type="minidb", **kw):
    workspace.RunOperatorOnce(core.CreateOperator(
        "Save", blobs, [], db=path(db), db_type=db_type, absolute_path=1, **kw))


NUMERIC = {
    "f32": rs.randn(2, 3).astype(np.float32),
    "i64": np.array([1, -2, 3 << 40], dtype=np.int64),
    "u8": np.array([0, 7, 255], dtype=np.uint8),
    "flag": np.array([[True, False, True]]),
    "half": np.array([1.5, -0.25], dtype=np.float16),
    "f64": np.array([1e-300, 2.5]),
    "i32_scalar": np.array(7, dtype=np.int32),
    "i8": np.array([-128, 127], dtype=np.int8),
    "i16": np.array([-300, 300], dtype=np.int16),
}
STRINGS = {"names": ["ab", "cde", ""]}
RAW = {"meta": "raw bytes \x00 with a nul"}

workspace.ResetWorkspace()
for name, value in NUMERIC.items():
    workspace.FeedBlob(name, value)
workspace.FeedBlob("names", np.array([s.encode() for s in STRINGS["names"]], dtype=object))
workspace.FeedBlob("meta", RAW["meta"].encode("latin-1"))
np.savez(path("blobs.npz"), **NUMERIC)
with open(path("blobs_strings.json"), "w") as fh:
    json.dump({"strings": STRINGS, "raw": RAW, "order": list(NUMERIC) + ["names", "meta"]}, fh,
              indent=1)
order = list(NUMERIC) + ["names", "meta"]
save(order, "dtypes.minidb")


workspace.FeedBlob("ten", np.arange(10, dtype=np.float32))
workspace.FeedBlob("empty", np.zeros((0, 3), dtype=np.float32))
save(["ten", "empty"], "chunked.minidb", chunk_size=4)

workspace.FeedBlob("iter", np.array([4], dtype=np.int64))
workspace.RunOperatorOnce(core.CreateOperator(
    "Checkpoint", ["iter", "f32"], [], db=path("ckpt_%d.minidb"), db_type="minidb", every=2,
    absolute_path=1))

# A small classifier with SpatialBN in test mode: its running statistics must survive export.
workspace.ResetWorkspace()
model = model_helper.ModelHelper(name="small", init_params=True)
conv = brew.conv(model, "data", "conv", dim_in=3, dim_out=4, kernel=3, pad=1)
bn = brew.spatial_bn(model, conv, "bn", dim_in=4, is_test=True)
relu = brew.relu(model, bn, "relu")
fc = brew.fc(model, relu, "fc", dim_in=4 * 5 * 5, dim_out=6)
brew.softmax(model, fc, "softmax")
workspace.RunNetOnce(model.param_init_net)
workspace.FeedBlob("bn_rm", rs.randn(4).astype(np.float32))
workspace.FeedBlob("bn_riv", (rs.rand(4) + 0.5).astype(np.float32))
data = rs.randn(2, 3, 5, 5).astype(np.float32)
workspace.FeedBlob("data", data)
workspace.RunNetOnce(model.net)
softmax = workspace.FetchBlob("softmax")
params = [str(p) for p in model.GetAllParams()]   # incl. the computed bn_rm / bn_riv

meta = predictor_exporter.PredictorExportMeta(
    predict_net=model.net.Proto(), parameters=params, inputs=["data"], outputs=["softmax"],
    shapes={"data": data.shape, "softmax": softmax.shape})
predictor_exporter.save_to_db("minidb", path("small_predictor.minidb"), meta)
init_net, predict_net = mobile_exporter.Export(workspace, model.net, params)
with open(path("small_mobile_init.pb"), "wb") as fh:
    fh.write(init_net.SerializeToString())
with open(path("small_mobile_predict.pb"), "wb") as fh:
    fh.write(predict_net.SerializeToString())
predictor = workspace.Predictor(init_net.SerializeToString(), predict_net.SerializeToString())
mobile_out = predictor.run([data])[0]
assert np.allclose(mobile_out, softmax, atol=1e-6)
np.savez(path("small_io.npz"), data=data, softmax=softmax, params=np.array(params))
print("wrote", sorted(os.listdir(OUT)))
