"""food101.interop.onnx_export.to_onnx: checked with onnx.checker, reproduced by onnx.reference within 1e-4."""
import importlib.util
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from tests.support.export_helpers import ZOO, fine_tuned, run_deploy  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from food101 import zoo
from food101.interop import onnx_export as export  # noqa: E402
from food101.interop.onnx_import import from_onnx  # noqa: E402
from food101.caffe2.proto import caffe2_pb2  # noqa: E402
from food101.caffe2.utils import given_fill, make_op
from tests.support import REPO

REPO = REPO


@pytest.fixture(scope="module")
def trained():
    return fine_tuned()


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    train, weights = trained
    path = str(tmp_path_factory.mktemp("onnx") / "food101.onnx")
    proto = export.to_onnx(train, path, weights=weights)
    return path, proto


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def test_graph_is_opset13_checked_with_ceil_mode_pooling(exported):
    path, proto = exported
    onnx.checker.check_model(onnx.load(path), full_check=True)
    assert proto.opset_import[0].version == 13
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Conv") == 26 and ops.count("Concat") == 8
    assert "Dropout" not in ops and "StopGradient" not in ops  # inference: Dropout is the identity
    pools = [n for n in proto.graph.node if n.op_type == "MaxPool"]
    assert len(pools) == 3 and all(_attrs(p)["ceil_mode"] == 1 for p in pools)
    assert ops[-2:] == ["GlobalAveragePool", "Softmax"] and _attrs(proto.graph.node[-1])["axis"] == 1
    (inp,) = proto.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "data" and dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [3, 227, 227]
    assert proto.graph.output[0].name == "softmaxout"
    # in-place Caffe2 blobs (Relu conv1 -> conv1) became distinct SSA values
    outputs = [o for n in proto.graph.node for o in n.output]
    assert len(outputs) == len(set(outputs))
    assert {t.name for t in proto.graph.initializer} == set(zoo.load(ZOO).params)


def test_reference_evaluator_reproduces_our_outputs(exported, trained):
    path, _ = exported
    train, weights = trained
    x = (np.random.RandomState(3).rand(2, 3, 67, 67).astype(np.float32) - 0.5) * 200
    (got,) = ReferenceEvaluator(path).run(None, {"data": x})
    want = run_deploy(train.finetune.deploy, x, weights)
    assert got.shape == want.shape == (2, 101, 1, 1)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    # ceil-mode sizes on an input where floor and ceil differ (67: pool3 8 vs 7)
    assert export.verify_onnx(path, train, weights=weights, inputs=x) < 1e-4


def test_round_trip_through_from_onnx(exported, trained):
    path, _ = exported
    train, weights = trained
    back = from_onnx(path)
    assert [a.i for op in back.predict_net.op if op.type == "MaxPool"
            for a in op.arg if a.name == "legacy_pad"] == [3, 3, 3]
    x = (np.random.RandomState(4).rand(1, 3, 67, 67).astype(np.float32) - 0.5) * 200
    np.testing.assert_allclose(run_deploy(back, x), run_deploy(train.finetune.deploy, x, weights),
                               atol=1e-6, rtol=1e-5)


def test_spatial_bn_model_exports_at_opset15_and_matches(tmp_path):
    from tests.support.zoo_models import bn_zoo_model
    train, weights = fine_tuned(zoo_model=bn_zoo_model(), num_classes=5, unfreeze_from="c1", size=12)
    path = str(tmp_path / "bn.onnx")
    proto = export.to_onnx(train, path, weights=weights)
    assert proto.opset_import[0].version == 15
    assert [n.op_type for n in proto.graph.node].count("BatchNormalization") == 2
    x = np.random.RandomState(5).randn(3, 3, 12, 12).astype(np.float32)
    (got,) = ReferenceEvaluator(path).run(None, {"data": x})
    np.testing.assert_allclose(got, run_deploy(train.finetune.deploy, x, weights), atol=1e-4, rtol=1e-4)
    with pytest.raises(export.ExportError, match="opset 12"):
        export.to_onnx(train, path, weights=weights, opset=12)


def _small_zoo(ops, params, input_shape, output):
    predict = caffe2_pb2.NetDef(name="small")
    for op_type, inputs, outputs, args in ops:
        predict.op.append(make_op(op_type, inputs, outputs, **args))
    init = caffe2_pb2.NetDef(name="small_init")
    init.op.extend(given_fill(k, v) for k, v in params.items())
    predict.external_input.extend(["data"] + list(params))
    predict.external_output.append(output)
    return zoo.ZooModel(init, predict, "data", input_shape)


def test_other_op_mappings_match_the_reference_evaluator(tmp_path):
    """LRN, asymmetric Conv pads, legacy ceil-mode MaxPool with padding, legacy broadcast Add,
    Sum, Softmax over more than one axis (Flatten + Softmax + Reshape), Reshape, FC (Gemm)."""
    rs = np.random.RandomState(6)
    params = {"w": rs.randn(4, 3, 3, 3).astype(np.float32) * 0.3, "b": rs.randn(4).astype(np.float32),
              "c": rs.randn(4).astype(np.float32), "fw": rs.randn(7, 4 * 5 * 4).astype(np.float32) * 0.2,
              "fb": rs.randn(7).astype(np.float32)}
    ops = [
        ("Conv", ["data", "w", "b"], ["c1"], dict(kernel=3, pad_t=1, pad_l=0, pad_b=2, pad_r=1, stride=1)),
        ("LRN", ["c1"], ["n1", "n1_scale"], dict(size=3, alpha=1e-2, beta=0.75, bias=1.0)),
        ("Relu", ["n1"], ["n1"], {}),
        ("MaxPool", ["n1"], ["p1"], dict(kernel=3, stride=2, pad=1, legacy_pad=3)),
        ("Add", ["p1", "c"], ["a1"], dict(broadcast=1, axis=1)),
        ("Sum", ["a1", "p1"], ["s1"], {}),
        ("Softmax", ["s1"], ["sm"], dict(axis=1)),
        ("Reshape", ["sm"], ["r1", "r1_old"], dict(shape=[0, -1])),
        ("FC", ["r1", "fw", "fb"], ["fc"], {}),
        ("Softmax", ["fc"], ["out"], {}),
    ]
    # batch 4 = LRN channels 4: onnx 1.23's reference LRN loops `for c in range(x.shape[0])`
    # (the batch size), so channels past the batch size would get no normalisation there
    model = _small_zoo(ops, params, (4, 3, 7, 8), "out")
    path = str(tmp_path / "small.onnx")
    proto = export.to_onnx(model, path, weights=params)
    types = [n.op_type for n in proto.graph.node]
    assert {"LRN", "Sum", "Flatten", "Reshape", "Gemm", "Shape"} <= set(types)
    x = rs.randn(4, 3, 7, 8).astype(np.float32)
    (got,) = ReferenceEvaluator(path).run(None, {"data": x})
    np.testing.assert_allclose(got, run_deploy(model, x, params), atol=1e-5, rtol=1e-4)


def test_unsupported_op_is_named(tmp_path):
    model = _small_zoo([("Conv", ["data", "w"], ["c"], dict(kernel=1)), ("Exp", ["c"], ["out"], {})],
                       {"w": np.ones((2, 3, 1, 1), np.float32)}, (1, 3, 4, 4), "out")
    with pytest.raises(export.ExportError, match=r"op #1 Exp .* has no ONNX mapping"):
        export.to_onnx(model, str(tmp_path / "x.onnx"), weights=model.weights())


def test_export_tool_writes_both_formats(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("export_tool", os.path.join(REPO, "tools", "export.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "out"
    assert tool.main(["--model", ZOO, "--out", str(out), "--verify"]) == 0
    text = capsys.readouterr().out
    assert "opset 13" in text and "max |diff|" in text
    assert {"init_net.pb", "predict_net.pb", "value_info.json", "model.onnx"} <= set(os.listdir(out))
    assert tool.main(["--model", str(tmp_path / "nowhere"), "--out", str(out)]) == 1
    assert "does not exist" in capsys.readouterr().err
