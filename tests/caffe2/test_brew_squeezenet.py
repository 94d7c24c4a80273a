"""brew builds the Model Zoo SqueezeNet exactly as real Caffe2 did (zoo/squeezenet/predict_net)."""
import os

import numpy as np
import pytest

from food101.caffe2 import brew, core, model_helper, workspace
from food101.caffe2.proto import caffe2_pb2
from tests.support import ZOO

ZOO = ZOO
FIRES = [("fire2", 16, 64), ("fire3", 16, 64), ("fire4", 32, 128), ("fire5", 32, 128),
         ("fire6", 48, 192), ("fire7", 48, 192), ("fire8", 64, 256), ("fire9", 64, 256)]


def load_net(name):
    net = caffe2_pb2.NetDef()
    with open(os.path.join(ZOO, name), "rb") as fh:
        net.ParseFromString(fh.read())
    return net


def build_squeezenet(init_params=True, num_classes=1000):
    """The generator's squeezenet_predict_net, with this project's API."""
    m = model_helper.ModelHelper(name="squeezenet", init_params=init_params)
    brew.conv(m, "data", "conv1", 3, 64, kernel=3, stride=2)
    brew.relu(m, "conv1", "conv1")
    brew.max_pool(m, "conv1", "pool1", kernel=3, stride=2, legacy_pad=3)
    prev, cin = "pool1", 64
    for name, s, e in FIRES:
        brew.conv(m, prev, name + "/squeeze1x1", cin, s, kernel=1)
        brew.relu(m, name + "/squeeze1x1", name + "/squeeze1x1")
        brew.conv(m, name + "/squeeze1x1", name + "/expand1x1", s, e, kernel=1)
        brew.relu(m, name + "/expand1x1", name + "/expand1x1")
        brew.conv(m, name + "/squeeze1x1", name + "/expand3x3", s, e, kernel=3, pad=1)
        brew.relu(m, name + "/expand3x3", name + "/expand3x3")
        m.net.Concat([name + "/expand1x1", name + "/expand3x3"],
                     [name + "/concat", "_" + name + "/concat_dims"], axis=1)
        prev, cin = name + "/concat", 2 * e
        if name in ("fire3", "fire5"):
            pool = "pool3" if name == "fire3" else "pool5"
            brew.max_pool(m, prev, pool, kernel=3, stride=2, legacy_pad=3)
            prev = pool
    m.net.Dropout([prev], [prev], ratio=0.5, is_test=1)
    brew.conv(m, prev, "conv10", cin, num_classes, kernel=1)
    brew.relu(m, "conv10", "conv10")
    brew.average_pool(m, "conv10", "pool10", global_pooling=True)
    brew.softmax(m, "pool10", "softmaxout")
    return m


def as_predict_net(m):
    """What the generator did to the brew net to get the zoo's predict_net."""
    pred = caffe2_pb2.NetDef()
    pred.CopyFrom(m.net.Proto())
    pred.name = "squeezenet"
    pred.external_input[:] = ["data"] + [str(p) for p in m.params]
    pred.external_output[:] = ["softmaxout"]
    for op in pred.op:  # zoo nets carry no engine hints
        op.engine = ""
        keep = [a for a in op.arg if a.name != "exhaustive_search"]
        del op.arg[:]
        op.arg.extend(keep)
    return pred


def test_predict_net_matches_the_zoo_op_by_op():
    expected = load_net("predict_net.pb")
    ours = as_predict_net(build_squeezenet())
    assert len(ours.op) == len(expected.op)
    for index, (a, b) in enumerate(zip(ours.op, expected.op)):
        assert a == b, "op #%d differs:\n%s\nexpected:\n%s" % (index, a, b)
    assert list(ours.external_input) == list(expected.external_input)
    assert ours.SerializeToString() == expected.SerializeToString()


def test_brew_sets_cudnn_engine_and_arg_scope_like_caffe2():
    m = build_squeezenet()
    conv1 = m.net.Proto().op[0]
    assert conv1.engine == "CUDNN"  # ModelHelper's default arg_scope has use_cudnn=True
    assert [(a.name, a.i if a.name != "order" else a.s) for a in conv1.arg] == [
        ("kernel", 3), ("order", b"NCHW"), ("stride", 2), ("exhaustive_search", 0)]


def test_params_and_their_fills_follow_caffe2_naming():
    m = build_squeezenet()
    init = load_net("init_net.pb")
    assert [str(p) for p in m.params] == [op.output[0] for op in init.op]
    assert [str(w) for w in m.weights] == [str(p) for p in m.params if str(p).endswith("_w")]
    assert [str(b) for b in m.biases] == [str(p) for p in m.params if str(p).endswith("_b")]
    fills = {op.output[0]: op for op in m.param_init_net.Proto().op}
    zoo_shapes = {op.output[0]: [a for a in op.arg if a.name == "shape"][0].ints for op in init.op}
    for name, op in fills.items():
        assert op.type == ("XavierFill" if name.endswith("_w") else "ConstantFill")
        assert list([a for a in op.arg if a.name == "shape"][0].ints) == list(zoo_shapes[name])


def test_init_params_false_expects_external_weights():
    m = build_squeezenet(init_params=False)
    assert len(m.param_init_net.Proto().op) == 0
    assert len(m.params) == 52
    assert as_predict_net(m) == load_net("predict_net.pb")


def test_brew_net_runs_with_the_zoo_weights():
    if not core.IsOperator("Dropout"):
        pytest.skip("Dropout op not registered yet")
    m = build_squeezenet(init_params=False)
    workspace.RunNetOnce(load_net("init_net.pb"))
    data = np.load(os.path.join(ZOO, "forward_227.npz"))
    workspace.FeedBlob("data", data["in:data"])
    workspace.RunNetOnce(m.net)
    np.testing.assert_allclose(workspace.FetchBlob("softmaxout"), data["out:softmaxout"],
                               rtol=1e-3, atol=1e-5)
