"""The caffe2 protobuf schema against files written by real Caffe2, and the file/tensor helpers."""
import os
import re

import numpy as np
import pytest

from food101.caffe2 import caffe2_pb2
from food101.caffe2.errors import Caffe2Error, ProtobufParseError
from food101.caffe2.proto import load_net, numpy_to_tensor, save_net, tensor_to_numpy
from tests.support import REFERENCE

REF = REFERENCE
ZOO = os.path.join(REF, "zoo", "squeezenet")


def _files(folder, suffix):
    root = os.path.join(REF, folder)
    return sorted(os.path.join(folder, f) for f in os.listdir(root) if f.endswith(suffix))


NET_FILES = _files("ops", ".pb") + _files("train", ".pb") + _files("zoo/squeezenet", ".pb")


@pytest.mark.parametrize("relpath", NET_FILES)
def test_netdef_round_trip_is_byte_identical(relpath):
    data = open(os.path.join(REF, relpath), "rb").read()
    net = caffe2_pb2.NetDef.FromString(data)
    assert net.SerializeToString() == data
    # Every field real Caffe2 wrote is one the schema knows (none kept as unknown bytes).
    net.DiscardUnknownFields()
    assert net.SerializeToString() == data
    assert len(net.op) > 0


def test_fixture_list_is_not_empty():
    assert len(NET_FILES) > 50


@pytest.mark.parametrize("variant", ["byte", "float"])
def test_lmdb_tensorprotos(variant):
    lmdb = pytest.importorskip("lmdb")
    path = os.path.join(REF, "lmdb", "tensorprotos_%s.lmdb" % variant)
    expected = np.load(path + ".expected.npz")
    env = lmdb.open(path, readonly=True, lock=False)
    try:
        with env.begin() as txn:
            records = [(bytes(k), bytes(v)) for k, v in txn.cursor()]
    finally:
        env.close()
    assert [k for k, _ in records] == [b"%08d" % i for i in range(len(expected["labels"]))]
    want_type = caffe2_pb2.TensorProto.BYTE if variant == "byte" else caffe2_pb2.TensorProto.FLOAT
    for i, (_, value) in enumerate(records):
        protos = caffe2_pb2.TensorProtos.FromString(value)
        assert protos.SerializeToString() == value
        image, label = protos.protos
        assert image.data_type == want_type
        assert label.data_type == caffe2_pb2.TensorProto.INT32
        np.testing.assert_array_equal(tensor_to_numpy(image), expected["images"][i])
        # Caffe2's examples write the label without dims: a scalar, one value.
        assert tensor_to_numpy(label).shape == ()
        assert tensor_to_numpy(label) == expected["labels"][i]


def test_pbtxt_equals_pb():
    text_net = load_net(os.path.join(ZOO, "predict_net.pbtxt"))
    binary_net = load_net(os.path.join(ZOO, "predict_net.pb"))
    assert text_net == binary_net
    assert text_net.SerializeToString() == open(os.path.join(ZOO, "predict_net.pb"), "rb").read()


def test_python_module_names():
    assert (caffe2_pb2.CPU, caffe2_pb2.CUDA, caffe2_pb2.PROTO_CUDA) == (0, 1, 1)
    assert caffe2_pb2.DeviceTypeProto.Name(caffe2_pb2.HIP) == "PROTO_HIP"
    assert (caffe2_pb2.TensorProto.FLOAT, caffe2_pb2.TensorProto.BYTE) == (1, 3)
    assert caffe2_pb2.TensorProto.DataType.Name(12) == "FLOAT16"
    assert caffe2_pb2.TensorProto().data_type == caffe2_pb2.TensorProto.FLOAT
    assert caffe2_pb2.DeviceOption().device_type == caffe2_pb2.CPU
    option = caffe2_pb2.DeviceOption(device_type=caffe2_pb2.CUDA, device_id=1)
    assert option.SerializeToString() == b"\x08\x01\x10\x01"
    from food101.caffe2.proto import caffe2_pb2 as schema
    assert caffe2_pb2.NetDef is schema.NetDef


def test_argument_nests_nets_and_tensors():
    net = caffe2_pb2.NetDef(name="outer")
    arg = net.op.add(type="If").arg.add(name="then_net", n=caffe2_pb2.NetDef(name="inner"))
    arg.tensors.add().CopyFrom(numpy_to_tensor(np.ones(2, np.float32)))
    again = caffe2_pb2.NetDef.FromString(net.SerializeToString())
    assert again.op[0].arg[0].n.name == "inner"
    assert tensor_to_numpy(again.op[0].arg[0].tensors[0]).tolist() == [1.0, 1.0]


ARRAYS = {
    "float32": np.arange(6, dtype=np.float32).reshape(2, 3) / 3,
    "float64": np.array([[1e300, -2.5]]),
    "int32": np.array([-(2 ** 31), 2 ** 31 - 1, 0], dtype=np.int32),
    "int64": np.array([-(2 ** 62), 2 ** 40], dtype=np.int64).reshape(2, 1, 1),
    "int16": np.array([-32768, 32767], dtype=np.int16),
    "uint16": np.array([0, 65535], dtype=np.uint16),
    "int8": np.array([-128, 127], dtype=np.int8),
    "uint8": np.array([[0, 255], [7, 9]], dtype=np.uint8),
    "bool": np.array([True, False, True]),
    "float16": np.array([1.5, -65504.0, 6e-8, np.inf], dtype=np.float16),
    "string": np.array([b"ab", b"\xff\x00"], dtype=object),
    "scalar": np.float32(2.5),
}


@pytest.mark.parametrize("key", sorted(ARRAYS))
def test_tensor_round_trip(key):
    array = np.asarray(ARRAYS[key])
    tensor = caffe2_pb2.TensorProto.FromString(
        numpy_to_tensor(array, name=key).SerializeToString())
    assert tensor.name == key and list(tensor.dims) == list(array.shape)
    back = tensor_to_numpy(tensor)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_float16_is_stored_as_bit_patterns_in_int32_data():
    tensor = numpy_to_tensor(np.array([1.0, -2.0], dtype=np.float16))
    assert tensor.data_type == caffe2_pb2.TensorProto.FLOAT16
    assert list(tensor.int32_data) == [0x3C00, 0xC000]


def test_uint8_as_byte_data():
    image = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    tensor = numpy_to_tensor(image, data_type=caffe2_pb2.TensorProto.BYTE)
    assert tensor.byte_data == image.tobytes() and not tensor.int32_data
    np.testing.assert_array_equal(tensor_to_numpy(tensor), image)


def test_count_mismatch_names_the_tensor():
    tensor = caffe2_pb2.TensorProto(name="conv1_w", dims=[2, 3], float_data=[1.0, 2.0])
    with pytest.raises(Caffe2Error, match=r"'conv1_w'.*\[2, 3\].*6.*float_data holds 2"):
        tensor_to_numpy(tensor)


def test_save_and_load_binary_and_text(tmp_path):
    net = load_net(os.path.join(ZOO, "predict_net.pb"))
    for name in ("net.pb", "net.pbtxt"):
        path = save_net(net, str(tmp_path / name))
        assert load_net(path) == net
    assert sorted(os.listdir(tmp_path)) == ["net.pb", "net.pbtxt"]  # no temp files left
    assert open(tmp_path / "net.pbtxt").read().startswith('name: "squeezenet"')


def test_truncated_file_names_the_file(tmp_path):
    data = open(os.path.join(ZOO, "init_net.pb"), "rb").read()
    path = tmp_path / "init_net.pb"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ProtobufParseError, match=r"init_net\.pb: not a caffe2\.NetDef.*truncated"):
        load_net(str(path))


@pytest.mark.parametrize("name, content", [
    ("weights.pb", b"PK\x03\x04 this is a zip file, not a protobuf"),
    ("notes.pbtxt", b"hello world"),
    ("empty.pb", b""),
])
def test_not_a_netdef_names_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ProtobufParseError, match=re.escape(name) + r": .*caffe2\.NetDef"):
        load_net(str(path))
