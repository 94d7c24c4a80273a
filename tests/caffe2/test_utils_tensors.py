"""caffe2.utils numpy <-> TensorProto helpers: byte-identical with real Caffe2's
(serialization/utils_*.npz, utils_tensors.pb from tools/gen_utils_fixtures.py), and the
create_your_own_dataset flow (C.create_db + NumpyArrayToCaffe2Tensor + TensorProtosDBInput)."""
import numpy as np
import pytest

from food101.caffe2 import core, utils, workspace
from food101.caffe2.proto import caffe2_pb2
from tests.support import reference_path

ARRAYS = np.load(reference_path("serialization", "utils_arrays.npz"))
ROUNDTRIP = np.load(reference_path("serialization", "utils_roundtrip.npz"))


def _real_tensors():
    protos = caffe2_pb2.TensorProtos()
    with open(reference_path("serialization", "utils_tensors.pb"), "rb") as fh:
        protos.ParseFromString(fh.read())
    return {t.name: t for t in protos.protos}


def test_numpy_to_tensor_bytes_and_back_match_real_caffe2():
    real = _real_tensors()
    assert sorted(real) == sorted(ARRAYS.files)
    for name in ARRAYS.files:
        ours = utils.NumpyArrayToCaffe2Tensor(ARRAYS[name], name)
        assert ours.SerializeToString() == real[name].SerializeToString(), name
        back = utils.Caffe2TensorToNumpyArray(real[name])
        assert back.dtype == ROUNDTRIP[name].dtype, name
        np.testing.assert_array_equal(back, ROUNDTRIP[name])


def test_unsupported_dtypes_raise_like_caffe2():
    with pytest.raises(RuntimeError, match="Numpy data type not supported yet: bool"):
        utils.NumpyArrayToCaffe2Tensor(np.array([True]))
    with pytest.raises(RuntimeError, match="Tensor data type not supported yet"):
        utils.Caffe2TensorToNumpyArray(caffe2_pb2.TensorProto(data_type=caffe2_pb2.TensorProto.STRING))


def test_layout_and_proto_helpers(tmp_path):
    x = np.arange(24).reshape(2, 3, 4, 1)
    assert utils.NHWC2NCHW(x).shape == (2, 1, 3, 4)
    assert utils.NCHW2NHWC(utils.NHWC2NCHW(x)).shape == x.shape
    net = core.Net("text")
    net.Relu("x", "y")
    text = str(net.Proto())
    assert utils.TryReadProtoWithClass(caffe2_pb2.NetDef, text) == net.Proto()
    assert utils.TryReadProtoWithClass(caffe2_pb2.NetDef, net.Proto().SerializeToString()) == net.Proto()
    (tmp_path / "net.pbtxt").write_text(text)
    utils.ConvertProtoToBinary(caffe2_pb2.NetDef, str(tmp_path / "net.pbtxt"), str(tmp_path / "net.pb"))
    assert caffe2_pb2.NetDef.FromString((tmp_path / "net.pb").read_bytes()) == net.Proto()
    a = core.CreateOperator("Relu", ["x"], ["y"], name="a")
    b = core.CreateOperator("Relu", ["x"], ["y"], name="b")
    assert utils.OpAlmostEqual(a, b, "name") and not utils.OpAlmostEqual(a, b)


def test_create_your_own_dataset_flow(tmp_path):
    features = np.random.RandomState(0).rand(5, 4).astype(np.float32)
    labels = np.array([0, 1, 2, 1, 0])                       # int64, as np.loadtxt(dtype=int) gives
    path = str(tmp_path / "iris_train.minidb")
    db = workspace.C.create_db("minidb", path, workspace.C.Mode.write)   # the tutorial: core.C (h15)
    transaction = db.new_transaction()
    for i in range(features.shape[0]):
        record = caffe2_pb2.TensorProtos()
        record.protos.extend([utils.NumpyArrayToCaffe2Tensor(features[i]),
                              utils.NumpyArrayToCaffe2Tensor(labels[i])])
        transaction.put("train_%03d".format(i), record.SerializeToString())
    del transaction
    del db                                                    # the tutorial's way to close it
    net = core.Net("example_reader")
    reader = net.CreateDB([], "dbreader", db=path, db_type="minidb")
    net.TensorProtosDBInput([reader], ["X", "Y"], batch_size=3)
    workspace.CreateNet(net)
    workspace.RunNet(net.Proto().name)
    np.testing.assert_array_equal(workspace.FetchBlob("X"), features[:3])
    assert workspace.FetchBlob("Y").dtype == np.int32
    np.testing.assert_array_equal(workspace.FetchBlob("Y"), labels[:3])
