"""Layer, loss, shape and math ops beyond the recorded cases: argument forms, layouts, training
mode statistics, Caffe2's gradient conventions and clear errors."""
import numpy as np
import pytest
import torch

from food101.caffe2 import workspace
from food101.caffe2.errors import OperatorError
from tests.support.op_runner import grad_of, run_op

rng = np.random.RandomState(0)


def randn(*shape):
    return torch.tensor(rng.randn(*shape), dtype=torch.float32)


# -------------------------------------------------------------------------------------- FC
def test_fc_axis_keeps_leading_dims():
    X, W, b = randn(2, 3, 4, 5), randn(6, 20), randn(6)
    Y = run_op("FC", [X, W, b], axis=2)
    assert Y.shape == (2, 3, 6)
    expected = X.reshape(6, 20) @ W.T + b
    np.testing.assert_allclose(Y.reshape(6, 6).numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_fc_axis_w_reads_the_weight_as_a_matrix():
    X, W, b = randn(3, 8), randn(2, 3, 8), randn(6)
    Y = run_op("FC", [X, W, b], axis_w=2)
    np.testing.assert_allclose(Y.numpy(), (X @ W.reshape(6, 8).T + b).numpy(), rtol=1e-5, atol=1e-5)


def test_fc_transposed_equals_fc_with_the_transposed_weight():
    X, W, b = randn(4, 2, 3), randn(6, 5), randn(5)
    np.testing.assert_allclose(run_op("FCTransposed", [X, W, b]).numpy(),
                               run_op("FC", [X, W.T.contiguous(), b]).numpy(), rtol=1e-5, atol=1e-6)


def test_fc_size_mismatch_is_clear():
    with pytest.raises(OperatorError) as info:
        run_op("FC", [randn(3, 4, 2, 2), randn(5, 12), randn(5)])
    assert "[3, 4, 2, 2]" in str(info.value) and "[5, 12]" in str(info.value) and "K=16" in str(info.value)


# --------------------------------------------------------------------------------- Dropout
def test_dropout_training_keeps_one_minus_ratio_and_scales():
    X = torch.ones(200, 500, requires_grad=True)
    Y, mask = run_op("Dropout", [X], num_outputs=2, ratio=0.3)
    assert mask.dtype == torch.bool and mask.shape == X.shape
    assert abs(mask.float().mean().item() - 0.7) < 0.005
    kept = Y.detach()[mask]
    np.testing.assert_allclose(kept.numpy(), 1 / 0.7, rtol=1e-6)
    assert (Y.detach()[~mask] == 0).all()
    (g,) = grad_of(Y, [X])
    np.testing.assert_array_equal(g.numpy(), mask.float().numpy() / 0.7)


def test_dropout_draws_from_the_workspace_rng():
    X = torch.ones(1000)
    workspace.seed(5)
    first = run_op("Dropout", [X], num_outputs=2, ratio=0.5)[1]
    second = run_op("Dropout", [X], num_outputs=2, ratio=0.5)[1]
    workspace.seed(5)
    again = run_op("Dropout", [X], num_outputs=2, ratio=0.5)[1]
    assert torch.equal(first, again) and not torch.equal(first, second)


def test_dropout_test_mode_passes_through_with_or_without_a_mask_output():
    X = randn(3, 4)
    assert run_op("Dropout", [X], ratio=0.5, is_test=1) is X
    Y, mask = run_op("Dropout", [X], num_outputs=2, ratio=0.5, is_test=1)
    assert Y is X and mask.all()


def test_dropout_ratio_one_drops_everything():
    Y, mask = run_op("Dropout", [randn(50)], num_outputs=2, ratio=1.0)
    assert not mask.any() and (Y == 0).all()


# ------------------------------------------------------------------------------ losses
def test_label_cross_entropy_float_label_names_the_blob():
    with pytest.raises(OperatorError) as info:
        run_op("LabelCrossEntropy", [torch.full((2, 3), 1 / 3), torch.tensor([0.0, 1.0])])
    assert "'in1'" in str(info.value) and "int" in str(info.value) and "float32" in str(info.value)


def test_label_out_of_range_names_blob_and_range():
    with pytest.raises(OperatorError) as info:
        run_op("LabelCrossEntropy", [torch.full((2, 3), 1 / 3), torch.tensor([0, 3], dtype=torch.int32)])
    message = str(info.value)
    assert "'in1'" in message and "[0, 3)" in message and "0 to 3" in message
    with pytest.raises(OperatorError, match=r"\[0, 3\)"):
        run_op("SoftmaxWithLoss", [randn(2, 3), torch.tensor([-1, 0], dtype=torch.int32)], num_outputs=2)


def test_label_cross_entropy_floor_and_its_gradient():
    X = torch.tensor([[0.0, 1.0], [0.25, 0.75]], requires_grad=True)
    Y = run_op("LabelCrossEntropy", [X, torch.tensor([0, 1], dtype=torch.int32)])
    np.testing.assert_allclose(Y.detach().numpy(), [-np.log(1e-20), -np.log(0.75)], rtol=1e-6)
    (g,) = grad_of(Y, [X])
    # Caffe2 divides by the floored probability: -1 / 1e-20, not torch.clamp's zero
    np.testing.assert_allclose(g.numpy(), [[-1e20, 0.0], [0.0, -1 / 0.75]], rtol=1e-6)


def test_label_cross_entropy_accepts_n_by_1_labels_and_4d_probabilities():
    X = torch.softmax(randn(4, 5), dim=1)
    labels = torch.tensor([1, 0, 4, 2], dtype=torch.int32)
    flat = run_op("LabelCrossEntropy", [X, labels])
    four_d = run_op("LabelCrossEntropy", [X.reshape(4, 5, 1, 1), labels.reshape(4, 1)])
    np.testing.assert_allclose(four_d.numpy(), flat.numpy())


def test_accuracy_ranks_ties_by_class_index_and_wants_2d():
    X = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    label = torch.tensor([1, 0], dtype=torch.int32)
    assert run_op("Accuracy", [X, label]).item() == 0.0  # class 0 ranks first in the tie
    assert run_op("Accuracy", [X, label], top_k=2).item() == 0.5
    acc = run_op("Accuracy", [X, label], top_k=3)
    assert acc.item() == 1.0 and acc.shape == () and acc.dtype == torch.float32
    with pytest.raises(OperatorError, match="Flatten"):
        run_op("Accuracy", [X.reshape(2, 3, 1, 1), label])


def test_softmax_with_loss_weights_summing_to_zero_give_zero_loss():
    X = randn(3, 4).requires_grad_(True)
    P, loss = run_op("SoftmaxWithLoss", [X, torch.tensor([0, 1, 2], dtype=torch.int32), torch.zeros(3)],
                     num_outputs=2)
    assert loss.item() == 0.0
    (g,) = grad_of(loss, [X])
    assert (g == 0).all()


def test_softmax_with_loss_scale_and_label_prob():
    X = randn(3, 4).requires_grad_(True)
    labels = torch.tensor([0, 3, 1])
    P, loss = run_op("SoftmaxWithLoss", [X, labels.int()], num_outputs=2, scale=2.0)
    onehot = torch.nn.functional.one_hot(labels, 4).float()
    _, loss_prob = run_op("SoftmaxWithLoss", [X, onehot], num_outputs=2, scale=2.0, label_prob=1)
    expected = 2.0 * torch.nn.functional.cross_entropy(X.detach(), labels)
    np.testing.assert_allclose([loss.item(), loss_prob.item()], [expected.item()] * 2, rtol=1e-5)
    (g,) = grad_of(loss, [X])
    np.testing.assert_allclose(g.numpy(), (2.0 * (P.detach() - onehot) / 3).numpy(), rtol=1e-5, atol=1e-7)


def test_softmax_with_loss_spatial_ignores_minus_one():
    X = randn(2, 3, 2, 2)
    label = torch.tensor([[[0, 1], [2, -1]], [[-1, -1], [1, 0]]], dtype=torch.int32)
    P, loss = run_op("SoftmaxWithLoss", [X, label], num_outputs=2, spatial=1)
    expected = torch.nn.functional.cross_entropy(X, label.long(), ignore_index=-1)
    np.testing.assert_allclose(loss.item(), expected.item(), rtol=1e-5)
    np.testing.assert_allclose(P.numpy(), torch.softmax(X, 1).numpy(), rtol=1e-6)


def test_averaged_loss_is_a_scalar():
    assert run_op("AveragedLoss", [torch.tensor([1.0, 2.0, 6.0])]).shape == ()


# -------------------------------------------------------------------- softmax / normalization
def test_softmax_reads_the_trailing_dims_as_one_row():
    X = randn(2, 3, 2, 2)
    Y = run_op("Softmax", [X])
    np.testing.assert_allclose(Y.numpy(), torch.softmax(X.reshape(2, 12), 1).reshape(2, 3, 2, 2).numpy(),
                               rtol=1e-6)
    np.testing.assert_allclose(run_op("Softmax", [X], axis=3).numpy(), torch.softmax(X, 3).numpy(), rtol=1e-6)


def test_spatial_bn_nhwc_equals_nchw_and_updates_running_stats():
    X = randn(4, 3, 5, 5) * 2 + 1
    params = [randn(3), randn(3), randn(3), randn(3).abs() + 0.5]
    nchw = run_op("SpatialBN", [X] + params, num_outputs=5, momentum=0.8)
    nhwc = run_op("SpatialBN", [X.permute(0, 2, 3, 1)] + params, num_outputs=5, momentum=0.8, order="NHWC")
    np.testing.assert_allclose(nhwc[0].permute(0, 3, 1, 2).numpy(), nchw[0].numpy(), rtol=1e-5, atol=1e-5)
    for a, b in zip(nchw[1:], nhwc[1:]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    batch_var, batch_mean = torch.var_mean(X, dim=(0, 2, 3), unbiased=False)
    np.testing.assert_allclose(nchw[1].numpy(), (0.8 * params[2] + 0.2 * batch_mean).numpy(), rtol=1e-5)
    np.testing.assert_allclose(nchw[2].numpy(), (0.8 * params[3] + 0.2 * batch_var).numpy(), rtol=1e-5)
    test_mode = run_op("SpatialBN", [X] + params, is_test=1)
    expected = (X - params[2].reshape(1, 3, 1, 1)) / torch.sqrt(params[3].reshape(1, 3, 1, 1) + 1e-5)
    expected = expected * params[0].reshape(1, 3, 1, 1) + params[1].reshape(1, 3, 1, 1)
    np.testing.assert_allclose(test_mode.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_spatial_bn_running_stats_carry_no_gradient():
    X = randn(4, 3, 2, 2).requires_grad_(True)
    params = [randn(3).requires_grad_(True), randn(3), torch.zeros(3), torch.ones(3)]
    _, running_mean, running_var, _, _ = run_op("SpatialBN", [X] + params, num_outputs=5)
    assert not running_mean.requires_grad and not running_var.requires_grad


def test_lrn_nhwc_equals_nchw():
    X = randn(2, 7, 3, 3)
    Y, scale = run_op("LRN", [X], num_outputs=2, size=3, alpha=0.1, beta=0.75, bias=2.0)
    Yh, scale_h = run_op("LRN", [X.permute(0, 2, 3, 1)], num_outputs=2, size=3, alpha=0.1, beta=0.75,
                         bias=2.0, order="NHWC")
    np.testing.assert_allclose(Yh.permute(0, 3, 1, 2).numpy(), Y.numpy(), rtol=1e-6)
    window = (X[:, 0:2] ** 2).sum(1)  # channel 0 sees channels 0..1 (one before is padding)
    np.testing.assert_allclose(scale[:, 0].numpy(), (2.0 + 0.1 / 3 * window).numpy(), rtol=1e-6)


# ---------------------------------------------------------------------------- shape ops
def test_concat_order_add_axis_and_split_round_trip():
    A, B = randn(2, 4, 4, 3), randn(2, 4, 4, 5)
    Y, info = run_op("Concat", [A, B], num_outputs=2, order="NHWC")  # no axis: NHWC's C is 3
    assert Y.shape == (2, 4, 4, 8) and info.tolist() == [3, 5] and info.dtype == torch.int32
    parts = run_op("Split", [Y], num_outputs=2, order="NHWC", split=[3, 5])
    assert torch.equal(parts[0], A) and torch.equal(parts[1], B)
    parts = run_op("Split", [Y, torch.tensor([3, 5], dtype=torch.int32)], num_outputs=2, axis=3)
    assert torch.equal(parts[1], B)
    stacked, info = run_op("Concat", [A, A], num_outputs=2, axis=1, add_axis=1)
    assert stacked.shape == (2, 2, 4, 4, 3) and info.tolist() == [1, 1]
    with pytest.raises(OperatorError, match=r"\[2, 4, 4, 3\]"):
        run_op("Concat", [A, randn(2, 5, 4, 3)], num_outputs=2, axis=3)


def test_reshape_zero_copies_and_minus_one_infers():
    X = randn(2, 3, 4)
    Y, old = run_op("Reshape", [X], num_outputs=2, shape=[0, -1])
    assert Y.shape == (2, 12) and old.tolist() == [2, 3, 4] and old.dtype == torch.int64
    Y, _ = run_op("Reshape", [X, torch.tensor([4, 0, 2])], num_outputs=2)
    assert Y.shape == (4, 3, 2)
    with pytest.raises(OperatorError, match="does not agree"):
        run_op("Reshape", [X], num_outputs=2, shape=[5, 5])


def test_flatten_transpose_squeeze_expand():
    X = randn(2, 3, 4, 5)
    assert run_op("Flatten", [X], axis=2).shape == (6, 20)
    assert run_op("FlattenToVec", [X]).shape == (120,)
    assert run_op("Transpose", [X]).shape == (5, 4, 3, 2)
    assert torch.equal(run_op("NHWC2NCHW", [run_op("NCHW2NHWC", [X])]), X)
    assert run_op("Squeeze", [randn(2, 1, 3, 1)], dims=[1, 3]).shape == (2, 3)
    assert run_op("ExpandDims", [randn(2, 3)], dims=[0, 2]).shape == (1, 2, 1, 3)
    with pytest.raises(OperatorError, match="not 1"):
        run_op("Squeeze", [randn(2, 3)], dims=[1])


def test_cast_by_enum_or_name_and_gradient_through_float_casts():
    X = torch.tensor([[1.7, -1.7]])
    assert run_op("Cast", [X], to=2).tolist() == [[1, -1]]  # INT32 truncates like static_cast
    u8 = torch.tensor([0, 255], dtype=torch.uint8)
    assert run_op("Cast", [u8], to="FLOAT").dtype == torch.float32
    x = X.clone().requires_grad_(True)
    (g,) = grad_of(run_op("Cast", [x], to=13), [x])  # DOUBLE
    assert g.dtype == torch.float32 and (g == 1).all()
    strings = run_op("Cast", [torch.tensor([3, -2], dtype=torch.int32)], to=4)  # STRING
    assert strings.tolist() == [b"3", b"-2"]  # std::to_string, as Caffe2
    assert run_op("Cast", [X], to="STRING").tolist() == [[b"1.700000", b"-1.700000"]]
    assert run_op("Cast", [strings], to="INT64").tolist() == [3, -2]  # parsed back
    with pytest.raises(OperatorError, match="DataType"):
        run_op("Cast", [X], to="COMPLEX")


def test_stop_gradient_and_copies():
    x = randn(3).requires_grad_(True)
    assert not run_op("StopGradient", [x]).requires_grad
    assert run_op("EnsureCPUOutput", [x]).device.type == "cpu"
    assert torch.equal(run_op("Copy", [x]), x)


# ---------------------------------------------------------------------------------- math
def test_legacy_broadcast_axis_and_trailing():
    A = randn(2, 3, 4, 5)
    np.testing.assert_allclose(run_op("Add", [A, randn(3, 4)], broadcast=1, axis=1).shape, A.shape)
    B = randn(4, 5)
    np.testing.assert_allclose(run_op("Mul", [A, B], broadcast=1).numpy(), (A * B).numpy())
    C = randn(3)
    np.testing.assert_allclose(run_op("Sub", [A, C], broadcast=1, axis_str="C", order="NCHW").numpy(),
                               (A - C.reshape(1, 3, 1, 1)).numpy())
    with pytest.raises(OperatorError) as info:
        run_op("Add", [A, randn(4)], broadcast=1, axis=1)
    assert "[2, 3, 4, 5]" in str(info.value) and "[4]" in str(info.value)
    with pytest.raises(OperatorError, match="do not broadcast"):
        run_op("Mul", [randn(2, 3), randn(4, 5)])


def test_numpy_broadcast_without_the_flag_and_integer_division():
    assert run_op("Add", [randn(2, 1, 4), randn(3, 1)]).shape == (2, 3, 4)
    a, b = torch.tensor([7, -7], dtype=torch.int32), torch.tensor([2, 2], dtype=torch.int32)
    assert run_op("Div", [a, b]).tolist() == [3, -3]


def test_max_and_reduce_max_give_every_tie_the_gradient():
    a = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = torch.tensor([1.0, 5.0, 3.0], requires_grad=True)
    ga, gb = grad_of(run_op("Max", [a, b]), [a, b])
    assert ga.tolist() == [1.0, 0.0, 1.0] and gb.tolist() == [1.0, 1.0, 1.0]
    x = torch.tensor([[2.0, 2.0, 1.0], [0.0, 3.0, 3.0]], requires_grad=True)
    Y = run_op("ReduceMax", [x], axes=[1], keepdims=0)
    assert Y.tolist() == [2.0, 3.0]
    (g,) = grad_of(Y, [x])
    assert g.tolist() == [[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]


def test_reductions_axes_and_keepdims():
    X = randn(2, 3, 4)
    assert run_op("ReduceMean", [X]).shape == (1, 1, 1)
    np.testing.assert_allclose(run_op("ReduceSum", [X], axes=[0, 2], keepdims=0).numpy(),
                               X.sum(dim=(0, 2)).numpy(), rtol=1e-5)
    np.testing.assert_allclose(run_op("ReduceBackMean", [X], num_reduce_dim=2).numpy(),
                               X.mean(dim=(1, 2)).numpy(), rtol=1e-6)
    assert run_op("ReduceFrontSum", [X]).shape == (3, 4)


def test_clip_gradient_stops_at_the_bounds():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0], requires_grad=True)
    Y = run_op("Clip", [x], min=-1.0, max=1.0)
    assert Y.tolist() == [-1.0, -1.0, 0.0, 1.0, 1.0]
    (g,) = grad_of(Y, [x])
    assert g.tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]


def test_pow_exp_log_scale_sum_mean():
    X = randn(4).abs() + 0.1
    np.testing.assert_allclose(run_op("Pow", [X], exponent=2.0).numpy(), (X ** 2).numpy(), rtol=1e-6)
    np.testing.assert_allclose(run_op("Pow", [X, torch.full((4,), 3.0)]).numpy(), (X ** 3).numpy(), rtol=1e-5)
    np.testing.assert_allclose(run_op("Log", [run_op("Exp", [X])]).numpy(), X.numpy(), rtol=1e-5)
    np.testing.assert_allclose(run_op("Scale", [X], scale=0.5).numpy(), (X / 2).numpy())
    np.testing.assert_allclose(run_op("Sum", [X, X, X]).numpy(), (3 * X).numpy(), rtol=1e-6)
    np.testing.assert_allclose(run_op("Mean", [X, 3 * X]).numpy(), (2 * X).numpy(), rtol=1e-6)
    with pytest.raises(OperatorError, match="same shape"):
        run_op("Sum", [X, randn(3)])


def test_half_float_casts_sum_of_squares_and_adagrad():
    from food101.caffe2 import workspace
    from food101.caffe2.proto import caffe2_pb2
    from food101.caffe2.core import MakeArgument
    x = np.array([1.0, -2.0, 3.0], np.float32)
    workspace.FeedBlob("x", x)
    for op in [caffe2_pb2.OperatorDef(type="FloatToHalf", input=["x"], output=["h"]),
               caffe2_pb2.OperatorDef(type="HalfToFloat", input=["h"], output=["f"]),
               caffe2_pb2.OperatorDef(type="SumSqrElements", input=["f"], output=["s"])]:
        workspace.RunOperatorOnce(op)
    assert workspace.FetchBlob("h").dtype == np.float16
    np.testing.assert_array_equal(workspace.FetchBlob("f"), x)
    assert float(workspace.FetchBlob("s")) == 14.0
    param, moment, grad = np.ones(3, np.float32), np.full(3, 0.5, np.float32), x
    for name, value in dict(param=param, moment=moment, grad=grad, lr=np.array([-0.1], np.float32)).items():
        workspace.FeedBlob(name, value)
    op = caffe2_pb2.OperatorDef(type="Adagrad", input=["param", "moment", "grad", "lr"],
                                output=["param", "moment"])
    op.arg.append(MakeArgument("epsilon", 1e-5))
    workspace.RunOperatorOnce(op)
    new_moment = moment + grad * grad
    np.testing.assert_allclose(workspace.FetchBlob("moment"), new_moment)
    np.testing.assert_allclose(workspace.FetchBlob("param"),
                               param - 0.1 * grad / (np.sqrt(new_moment) + 1e-5), rtol=1e-6)
