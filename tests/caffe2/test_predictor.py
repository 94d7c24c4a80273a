"""predictor_exporter and mobile_exporter against exports written by real Caffe2
(tests/data/caffe2_reference/serialization: a Conv+SpatialBN+FC+Softmax net, its input and
real Caffe2's softmax; made by tools/gen_serialization_fixtures.py)."""
import os

import numpy as np
import pytest

from food101.caffe2 import brew, core, model_helper, workspace
from food101.caffe2.predictor import mobile_exporter, predictor_exporter, predictor_py_utils
from food101.caffe2.predictor_constants import predictor_constants
from food101.caffe2.proto import load_net
from tests.support import reference_path

REF = reference_path("serialization")
IO = np.load(os.path.join(REF, "small_io.npz"))
PARAMS = [str(p) for p in IO["params"]]


def _read(path):
    with open(path, "rb") as fh:
        return fh.read()


def _small_model():
    """The fixture's net, built here with the same brew calls (net names as in the fresh
    process that wrote the fixture: Caffe2 numbers repeated names "small_1", ...)."""
    core.Net._net_names_used.clear()
    model = model_helper.ModelHelper(name="small", init_params=True)
    conv = brew.conv(model, "data", "conv", dim_in=3, dim_out=4, kernel=3, pad=1)
    bn = brew.spatial_bn(model, conv, "bn", dim_in=4, is_test=True)
    relu = brew.relu(model, bn, "relu")
    fc = brew.fc(model, relu, "fc", dim_in=4 * 5 * 5, dim_out=6)
    brew.softmax(model, fc, "softmax")
    return model


def _model_with_reference_weights():
    model = _small_model()
    workspace.RunNetOnce(load_net(os.path.join(REF, "small_mobile_init.pb")))
    workspace.FeedBlob("data", IO["data"])
    workspace.RunNetOnce(model.net)
    return model


def test_real_caffe2_predictor_db_gives_real_softmax():
    net = predictor_exporter.prepare_prediction_net(os.path.join(REF, "small_predictor.minidb"), "minidb")
    assert workspace.FetchBlob("softmax").shape == IO["softmax"].shape   # zero-filled by predict-init
    workspace.FeedBlob("data", IO["data"])
    workspace.RunNet(net)
    np.testing.assert_allclose(workspace.FetchBlob("softmax"), IO["softmax"], atol=1e-6)


def test_real_caffe2_mobile_export_gives_real_softmax():
    workspace.RunNetOnce(load_net(os.path.join(REF, "small_mobile_init.pb")))
    workspace.FeedBlob("data", IO["data"])
    workspace.RunNetOnce(load_net(os.path.join(REF, "small_mobile_predict.pb")))
    np.testing.assert_allclose(workspace.FetchBlob("softmax"), IO["softmax"], atol=1e-6)


def test_save_to_db_writes_real_caffe2s_bytes(tmp_path):
    model = _model_with_reference_weights()
    meta = predictor_exporter.PredictorExportMeta(
        predict_net=model.net.Proto(), parameters=PARAMS, inputs=["data"], outputs=["softmax"],
        shapes={"data": IO["data"].shape, "softmax": IO["softmax"].shape})
    out = str(tmp_path / "ours.minidb")
    predictor_exporter.save_to_db("minidb", out, meta)
    assert _read(out) == _read(os.path.join(REF, "small_predictor.minidb"))


def test_mobile_export_keeps_spatialbn_running_stats_and_matches_real_caffe2(tmp_path):
    model = _model_with_reference_weights()
    expected = workspace.FetchBlob("softmax")
    # model.params has no bn_rm / bn_riv: Caffe2 exported [1, 1] zeros for them; here they stay.
    assert "bn_rm" not in [str(p) for p in model.params]
    init_net, predict_net = mobile_exporter.Export(workspace, model.net, model.params)
    assert init_net.SerializeToString() == _read(os.path.join(REF, "small_mobile_init.pb"))
    assert predict_net.SerializeToString() == _read(os.path.join(REF, "small_mobile_predict.pb"))
    workspace.ResetWorkspace()
    workspace.RunNetOnce(init_net)
    workspace.FeedBlob("data", IO["data"])
    workspace.RunNetOnce(predict_net)
    np.testing.assert_array_equal(workspace.FetchBlob("softmax"), expected)


def test_predictor_db_round_trip_with_shapes_from_the_workspace_and_a_name(tmp_path):
    model = _model_with_reference_weights()
    expected = workspace.FetchBlob("softmax")
    meta = predictor_exporter.PredictorExportMeta(model.net, model.GetAllParams(), ["data"],
                                                  ["softmax"], name="food")
    path = str(tmp_path / "model.minidb")
    predictor_exporter.save_to_db("minidb", path, meta)
    workspace.ResetWorkspace()
    meta_net_def = predictor_exporter.load_from_db(path, "minidb")
    assert predictor_py_utils.GetBlobs(meta_net_def, meta.inputs_name()) == ["data"]
    assert meta.predict_net_name() == predictor_constants.PREDICT_NET_TYPE + "_food"
    # prepare_prediction_net reads the unnamed keys; a named export is run net by net
    workspace.RunNetOnce(predictor_py_utils.GetNet(meta_net_def, meta.global_init_name()))
    workspace.RunNetOnce(predictor_py_utils.GetNet(meta_net_def, meta.predict_init_name()))
    workspace.FeedBlob("data", IO["data"])
    workspace.RunNetOnce(predictor_py_utils.GetNet(meta_net_def, meta.predict_net_name()))
    np.testing.assert_array_equal(workspace.FetchBlob("softmax"), expected)


def test_export_meta_checks_like_caffe2():
    model = _small_model()
    with pytest.raises(ValueError, match="disjoint.*conv_w"):
        predictor_exporter.PredictorExportMeta(model.net, ["conv_w"], ["conv_w"], ["softmax"])
    with pytest.raises(ValueError, match="unique"):
        predictor_exporter.PredictorExportMeta(model.net, [], ["data", "data"], ["softmax"])
    meta = predictor_exporter.PredictorExportMeta(model.net, [], ["data"], ["softmax"])
    with pytest.raises(KeyError, match="data not in workspace but needed for shape"):
        predictor_exporter.get_meta_net_def(meta)


def test_a_plain_save_is_not_a_predictor_export():
    with pytest.raises(Exception, match="not a predictor_exporter export"):
        predictor_exporter.prepare_prediction_net(os.path.join(REF, "dtypes.minidb"), "minidb")
