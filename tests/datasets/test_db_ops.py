"""CreateDB + TensorProtosDBInput through the workspace, on Caffe2's own LMDB fixtures."""
import os

import numpy as np
import pytest

from food101.caffe2 import core, workspace
from food101.caffe2.errors import Caffe2Error
from tests.support import REFERENCE

FIXTURES = os.path.join(REFERENCE, "lmdb")


def _input_nets(path, batch_size, db_type="lmdb", **shard):
    init = core.Net("init")
    init.CreateDB([], "dbreader", db=path, db_type=db_type, **shard)
    net = core.Net("input")
    net.TensorProtosDBInput(["dbreader"], ["data", "label"], batch_size=batch_size)
    return init, net


@pytest.mark.parametrize("variant, dtype", [("byte", np.uint8), ("float", np.float32)])
def test_batches_as_stored_wrapping_around(variant, dtype):
    path = os.path.join(FIXTURES, "tensorprotos_%s.lmdb" % variant)
    expected = np.load(path + ".expected.npz")
    init, net = _input_nets(path, batch_size=5)
    workspace.RunNetOnce(init)
    workspace.CreateNet(net)
    images, labels = [], []
    for _ in range(3):                   # 15 records from 12: wraps around like Caffe2's DBReader
        workspace.RunNet(net.Proto().name)
        images.append(workspace.FetchBlob("data"))
        labels.append(workspace.FetchBlob("label"))
    images, labels = np.concatenate(images), np.concatenate(labels)
    assert images.dtype == dtype and images.shape == (15, 3, 8, 6) and labels.dtype == np.int32
    order = np.arange(15) % 12
    np.testing.assert_array_equal(images, expected["images"][order])
    np.testing.assert_array_equal(labels, expected["labels"][order])


def test_batch_size_zero_gives_one_unbatched_record():
    path = os.path.join(FIXTURES, "tensorprotos_byte.lmdb")
    expected = np.load(path + ".expected.npz")
    init, net = _input_nets(path, batch_size=0)
    workspace.RunNetOnce(init)
    workspace.RunNetOnce(net)
    np.testing.assert_array_equal(workspace.FetchBlob("data"), expected["images"][0])
    assert workspace.FetchBlob("label").shape == () and workspace.FetchBlob("label") == expected["labels"][0]


def test_shards():
    path = os.path.join(FIXTURES, "tensorprotos_byte.lmdb")
    expected = np.load(path + ".expected.npz")
    init, net = _input_nets(path, batch_size=6, num_shards=2, shard_id=1)
    workspace.RunNetOnce(init)
    workspace.RunNetOnce(net)
    np.testing.assert_array_equal(workspace.FetchBlob("label"), expected["labels"][1::2])


def test_db_type_without_argument_is_inferred_for_an_lmdb_folder():
    init, net = _input_nets(os.path.join(FIXTURES, "tensorprotos_byte.lmdb"), batch_size=2, db_type="")
    workspace.RunNetOnce(init)
    workspace.RunNetOnce(net)
    assert workspace.FetchBlob("data").shape == (2, 3, 8, 6)


def test_unsupported_db_type_and_missing_db():
    init, _ = _input_nets(os.path.join(FIXTURES, "tensorprotos_byte.lmdb"), 2, db_type="leveldb")
    with pytest.raises(Caffe2Error, match="db_type 'leveldb' is not supported.*lmdb"):
        workspace.RunNetOnce(init)
    init, _ = _input_nets("/nonexistent/db", 2)
    with pytest.raises(Caffe2Error, match="does not exist"):
        workspace.RunNetOnce(init)


def test_input_must_be_a_reader():
    workspace.FeedBlob("dbreader", np.zeros(3, np.float32))
    net = core.Net("input")
    net.TensorProtosDBInput(["dbreader"], ["data", "label"], batch_size=2)
    with pytest.raises(Caffe2Error, match="must be a DB reader made by CreateDB"):
        workspace.RunNetOnce(net)
