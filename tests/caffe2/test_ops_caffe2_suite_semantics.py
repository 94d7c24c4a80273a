"""Semantics that Caffe2's own operator tests (conv, spatial_bn, softmax, elementwise, adam,
momentum_sgd) check, each against a numpy reference written from those tests or against
real Caffe2's gradient makers (torch 1.4.0, recorded by hand below)."""
import numpy as np
import pytest

from food101.caffe2 import core, workspace


@pytest.fixture(autouse=True)
def fresh_workspace():
    workspace.ResetWorkspace()
    yield
    workspace.ResetWorkspace()


def run(op_type, inputs, outputs, **args):
    for name, value in inputs.items():
        workspace.FeedBlob(name, value)
    workspace.RunOperatorOnce(core.CreateOperator(op_type, list(inputs), outputs, **args))
    return [workspace.FetchBlob(o) for o in outputs]


def test_cpu_caffe2_reports_no_cudnn_and_no_mkldnn():
    import torch
    if not torch.cuda.is_available():
        assert workspace.GetCuDNNVersion() == 0
    assert workspace.C.has_mkldnn is False


def test_spatial_bn_over_several_batches_uses_the_given_sums():
    rng = np.random.RandomState(0)
    N, C, H, W, nb, eps, mom = 2, 3, 2, 2, 3, 1e-3, 0.9
    X = rng.randn(N, C, H, W).astype(np.float32)
    scale, bias, mean = (rng.randn(C).astype(np.float32) for _ in range(3))
    var = rng.rand(C).astype(np.float32)
    bm_sum = rng.rand(C).astype(np.float32) - 0.5
    bv_sum = rng.rand(C).astype(np.float32) + 1.0
    Y, rm, rv, sm, srstd = run("SpatialBN", dict(X=X, scale=scale, bias=bias, mean=mean, var=var,
                                                 bm=bm_sum, bv=bv_sum),
                               ["Y", "mean", "var", "sm", "sv"], is_test=0, epsilon=eps,
                               momentum=mom, num_batches=nb)
    size = nb * N * H * W
    bmean = bm_sum / size
    bvar = bv_sum / size - bmean ** 2
    rstd = 1 / np.sqrt(bvar + eps)
    expect = (X - bmean[:, None, None]) * rstd[:, None, None] * scale[:, None, None] \
        + bias[:, None, None]
    np.testing.assert_allclose(Y, expect, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(rm, mom * mean + (1 - mom) * bmean, rtol=1e-5)
    np.testing.assert_allclose(rv, mom * var + (1 - mom) * bvar, rtol=1e-5)
    np.testing.assert_allclose(sm, bmean, rtol=1e-5)
    np.testing.assert_allclose(srstd, rstd, rtol=1e-5)


def test_spatial_bn_gradient_over_several_batches_and_its_maker():
    rng = np.random.RandomState(1)
    N, C, H, W, nb = 2, 3, 2, 2, 2
    X, dY = rng.randn(N, C, H, W).astype(np.float32), rng.randn(N, C, H, W).astype(np.float32)
    scale, mean, ds_sum, db_sum = (rng.randn(C).astype(np.float32) for _ in range(4))
    rstd = rng.rand(C).astype(np.float32)
    dX, ds, db = run("SpatialBNGradient", dict(X=X, scale=scale, dY=dY, mean=mean, rstd=rstd,
                                               dss=ds_sum, dbs=db_sum),
                     ["dX", "ds", "db"], num_batches=nb)
    ds_e, db_e = ds_sum / nb, db_sum / nb
    alpha = scale * rstd
    beta = -alpha * ds_e * rstd / (N * H * W)
    gamma = alpha * (mean * ds_e * rstd - db_e) / (N * H * W)
    c = (slice(None), None, None)
    np.testing.assert_allclose(dX, alpha[c] * dY + beta[c] * X + gamma[c], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ds, ds_e, rtol=1e-6)
    np.testing.assert_allclose(db, db_e, rtol=1e-6)
    op = core.CreateOperator("SpatialBN", ["X", "s", "b", "m", "v", "bm", "bv"],
                             ["Y", "m", "v", "sm", "sv"], num_batches=2)
    grad_ops, _ = core.GradientRegistry.GetGradientForOp(op, ["Y_grad"] + [None] * 4)
    assert list(grad_ops[0].input) == ["X", "s", "Y_grad", "sm", "sv", "s_grad", "b_grad"]


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_softmax_with_loss_takes_labels_shaped_as_the_leading_dims():
    rng = np.random.RandomState(2)
    X = rng.rand(2, 2, 3).astype(np.float32)
    label = np.array([[0, 2], [1, 1]], dtype=np.int32)
    P, loss = run("SoftmaxWithLoss", dict(X=X, label=label), ["P", "loss"], axis=2)
    p = _softmax(X, 2)
    np.testing.assert_allclose(P, p, rtol=1e-5)
    picked = np.take_along_axis(p, label[..., None], 2)
    np.testing.assert_allclose(loss, -np.log(picked).mean(), rtol=1e-5)


def test_spatial_softmax_with_loss_ignores_minus_one_and_its_gradient_uses_p():
    rng = np.random.RandomState(3)
    X = rng.rand(2, 3, 2, 2).astype(np.float32)
    label = np.array([[[0, -1], [2, 1]], [[-1, -1], [1, 0]]], dtype=np.int32)
    w = rng.rand(2, 2, 2).astype(np.float32)
    P, loss = run("SpatialSoftmaxWithLoss", dict(X=X, label=label, w=w), ["P", "loss"])
    p = _softmax(X, 1)
    valid = label != -1
    safe = np.where(valid, label, 0)
    picked = np.take_along_axis(p, safe[:, None], 1)[:, 0]
    total = (w * valid).sum()
    np.testing.assert_allclose(loss, -(np.log(picked) * w * valid).sum() / total, rtol=1e-5)
    op = core.CreateOperator("SpatialSoftmaxWithLoss", ["X", "label", "w"], ["P", "loss"])
    grad_ops, g = core.GradientRegistry.GetGradientForOp(op, [None, "loss_grad"])
    assert [o.type for o in grad_ops] == ["SpatialSoftmaxWithLossGradient"]
    workspace.FeedBlob("loss_grad", np.array(2.0, dtype=np.float32))
    workspace.RunOperatorsOnce(grad_ops)
    onehot = np.zeros_like(p)
    np.put_along_axis(onehot, safe[:, None], 1.0, 1)
    expect = (p - onehot) * (w * valid)[:, None] * 2.0 / total
    np.testing.assert_allclose(workspace.FetchBlob(g[0]), expect, rtol=1e-4, atol=1e-6)


def test_bitwise_ops_broadcast_like_caffe2():
    a = np.array([[1, 2], [3, 12]], dtype=np.int32)
    b = np.array([3, 10], dtype=np.int32)
    for op_type, fn in [("BitwiseAnd", np.bitwise_and), ("BitwiseOr", np.bitwise_or),
                        ("BitwiseXor", np.bitwise_xor)]:
        (y,) = run(op_type, dict(A=a, B=b), ["Y"], broadcast=1)
        np.testing.assert_array_equal(y, fn(a, b))


@pytest.mark.parametrize("op_type,grad_type,inputs,deriv", [
    ("Rsqrt", "RsqrtGradient", ["Y_grad", "Y"], lambda x: -0.5 * x ** -1.5),
    ("Cbrt", "CbrtGradient", ["Y_grad", "Y"], lambda x: np.cbrt(x) ** -2 / 3),
    ("Swish", "SwishGradient", ["X", "Y", "Y_grad"],
     lambda x: 1 / (1 + np.exp(-x)) + x * np.exp(-x) / (1 + np.exp(-x)) ** 2),
])
def test_gradients_caffe2_computes_from_the_output(op_type, grad_type, inputs, deriv):
    op = core.CreateOperator(op_type, ["X"], ["Y"])
    grad_ops, _ = core.GradientRegistry.GetGradientForOp(op, ["Y_grad"])
    assert [(o.type, list(o.input)) for o in grad_ops] == [(grad_type, inputs)]
    x = np.array([0.5, 1.0, 2.0], dtype=np.float32)
    run(op_type, dict(X=x), ["Y"])
    workspace.FeedBlob("Y_grad", np.full(3, 2.0, dtype=np.float32))
    workspace.RunOperatorsOnce(grad_ops)
    np.testing.assert_allclose(workspace.FetchBlob("X_grad"), 2.0 * deriv(x), rtol=1e-4)


def test_div_gradient_four_inputs_and_legacy_three():
    rng = np.random.RandomState(4)
    A, dC = rng.randn(3, 2).astype(np.float32), rng.randn(3, 2).astype(np.float32)
    B = rng.rand(2).astype(np.float32) + 1.0
    C = A / B
    dA, dB = run("DivGradient", dict(dC=dC, A=A, B=B, C=C), ["dA", "dB"])
    np.testing.assert_allclose(dA, dC / B, rtol=1e-5)
    np.testing.assert_allclose(dB, (-dC * C / B).sum(0), rtol=1e-5)
    dA2, dB2 = run("DivGradient", dict(B=B, C=C, dC=dC), ["dA2", "dB2"])
    np.testing.assert_allclose(dA2, dA, rtol=1e-6)
    np.testing.assert_allclose(dB2, dB, rtol=1e-6)


def test_pow_of_two_blobs_gradient_ops_as_caffe2():
    # real Caffe2 (torch 1.4.0): GetGradientForOp(Pow(X, Y) -> Z, broadcast=1, axis=1)
    op = core.CreateOperator("Pow", ["X", "Y"], "Z", broadcast=1, axis=1)
    grad_ops, g = core.GradientRegistry.GetGradientForOp(op, ["Z_grad"])
    pre = "Y_grad_autogen_pre_red"
    assert [(o.type, list(o.input), list(o.output)) for o in grad_ops] == [
        ("ConstantFill", ["Y"], ["Y_grad"]), ("Sub", ["Y", "Y_grad"], ["Y_grad"]),
        ("Pow", ["X", "Y_grad"], ["X_grad"]), ("Mul", ["X_grad", "Z_grad"], ["X_grad"]),
        ("Mul", ["X_grad", "Y"], ["X_grad"]), ("Log", ["X"], [pre]), ("Mul", [pre, "Z"], [pre]),
        ("Mul", [pre, "Z_grad"], [pre]), ("SumReduceLike", [pre, "Y"], ["Y_grad"])]
    assert sorted(a.name for a in grad_ops[2].arg) == ["axis", "axis_str", "broadcast", "order"]
    assert [str(n) for n in g] == ["X_grad", "Y_grad"]
    rng = np.random.RandomState(5)
    X = rng.rand(2, 3, 4).astype(np.float32) + 1.0
    Y = rng.rand(3).astype(np.float32) + 1.0
    run("Pow", dict(X=X, Y=Y), ["Z"], broadcast=1, axis=1)
    workspace.FeedBlob("Z_grad", np.ones_like(X))
    workspace.RunOperatorsOnce(grad_ops)
    y = Y[:, None]
    np.testing.assert_allclose(workspace.FetchBlob("X_grad"), y * X ** (y - 1), rtol=1e-4)
    np.testing.assert_allclose(workspace.FetchBlob("Y_grad"),
                               (np.log(X) * X ** y).sum(axis=(0, 2)), rtol=1e-4)


def test_sum_reduce_like_defaults_to_the_trailing_dims():
    X = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    (y,) = run("SumReduceLike", dict(X=X, Y=np.zeros((3, 4), np.float32)), ["out"])
    np.testing.assert_allclose(y, X.sum(0))


@pytest.mark.parametrize("nesterov", [0, 1])
def test_sparse_momentum_sgd_updates_only_the_indexed_rows(nesterov):
    rng = np.random.RandomState(6)
    w, m = rng.randn(4, 2).astype(np.float32), np.abs(rng.randn(4, 2)).astype(np.float32)
    idx = np.array([2, 0], dtype=np.int64)
    g = rng.randn(2, 2).astype(np.float32)
    lr, mu = np.array([0.1], np.float32), 0.9
    out_g, out_m, out_w = run("SparseMomentumSGDUpdate", dict(g=g, m=m, lr=lr, w=w, i=idx),
                              ["ag", "m", "w"], momentum=mu, nesterov=nesterov)
    if nesterov:
        m_new = mu * m[idx] + 0.1 * g
        step = (1 + mu) * m_new - mu * m[idx]
    else:
        step = m_new = 0.1 * g + mu * m[idx]
    exp_m, exp_w = m.copy(), w.copy()
    exp_m[idx] = m_new
    exp_w[idx] -= step
    np.testing.assert_allclose(out_g, step, rtol=1e-5)
    np.testing.assert_allclose(out_m, exp_m, rtol=1e-5)
    np.testing.assert_allclose(out_w, exp_w, rtol=1e-5)


@pytest.mark.parametrize("row_wise", [False, True])
def test_sparse_adam_and_row_wise_sparse_adam(row_wise):
    rng = np.random.RandomState(7)
    p, m1 = rng.randn(4, 3).astype(np.float32), rng.randn(4, 3).astype(np.float32)
    m2 = np.abs(rng.randn(4) if row_wise else rng.randn(4, 3)).astype(np.float32)
    idx = np.array([3, 1], dtype=np.int64)
    g = rng.randn(2, 3).astype(np.float32)
    lr, it, b1, b2, eps = np.array([0.5], np.float32), np.array([4], np.int64), 0.8, 0.7, 0.1
    outs = run("RowWiseSparseAdam" if row_wise else "SparseAdam",
               dict(p=p, m1=m1, m2=m2, i=idx, g=g, lr=lr, it=it), ["p", "m1", "m2", "og"],
               beta1=b1, beta2=b2, epsilon=eps)
    t = 5
    corr = np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    new_m1 = b1 * m1[idx] + (1 - b1) * g
    if row_wise:
        new_m2 = b2 * m2[idx] + (1 - b2) * (g ** 2).mean(1)
        step = corr * new_m1 / (np.sqrt(new_m2)[:, None] + eps)
    else:
        new_m2 = b2 * m2[idx] + (1 - b2) * g ** 2
        step = corr * new_m1 / (np.sqrt(new_m2) + eps)
    exp_p, exp_m1, exp_m2 = p.copy(), m1.copy(), m2.copy()
    exp_p[idx] += 0.5 * step
    exp_m1[idx], exp_m2[idx] = new_m1, new_m2
    for got, expect in zip(outs, [exp_p, exp_m1, exp_m2, step]):
        np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op_type,args,out_shape", [
    ("AveragePool", dict(kernels=[4] * 3, strides=[1] * 3, pads=[1] * 6), (0, 1, 2, 2, 2)),
    ("MaxPool", dict(kernels=[2] * 3, strides=[2] * 3, pads=[0] * 6), (0, 1, 1, 1, 1)),
    ("MaxPool", dict(global_pooling=1), (0, 1, 1, 1, 1)),
])
def test_pooling_an_empty_batch_gives_the_windowed_empty_shape(op_type, args, out_shape):
    (Y,) = run(op_type, dict(X=np.zeros((0, 1, 3, 3, 3), np.float32)), ["Y"], **args)
    assert Y.shape == out_shape
    op = core.CreateOperator(op_type, ["X"], ["Y"], **args)
    grad_ops, _ = core.GradientRegistry.GetGradientForOp(op, ["Y_grad"])
    workspace.FeedBlob("Y_grad", Y)
    workspace.RunOperatorsOnce(grad_ops)
    assert workspace.FetchBlob("X_grad").shape == (0, 1, 3, 3, 3)


def test_max_pool_gradient_of_a_window_covering_the_image_goes_to_every_tied_max():
    X = np.zeros((1, 2, 6, 6), np.float32)
    X[0, 0, 1, 2] = X[0, 0, 4, 5] = 3.0  # two tied maxima in channel 0
    X[0, 1, 2, 2] = 1.0
    op = core.CreateOperator("MaxPool", ["X"], ["Y"], kernel=6, stride=1)
    (Y,) = run("MaxPool", dict(X=X), ["Y"], kernel=6, stride=1)
    grad_ops, _ = core.GradientRegistry.GetGradientForOp(op, ["Y_grad"])
    workspace.FeedBlob("Y_grad", np.array([[[[2.0]], [[5.0]]]], np.float32))
    workspace.RunOperatorsOnce(grad_ops)
    expect = np.zeros_like(X)
    expect[0, 0, 1, 2] = expect[0, 0, 4, 5] = 2.0
    expect[0, 1, 2, 2] = 5.0
    np.testing.assert_array_equal(workspace.FetchBlob("X_grad"), expect)


def test_average_pool_with_a_kernel_larger_than_the_unpadded_input():
    X = np.arange(27, dtype=np.float32).reshape(1, 1, 3, 3, 3)
    (Y,) = run("AveragePool", dict(X=X), ["Y"], kernels=[4] * 3, strides=[1] * 3, pads=[1] * 6)
    # each window covers a 3x3x3 padded corner: the mean of the input elements it covers
    padded = np.pad(X[0, 0], 1, constant_values=np.nan)
    expect = np.array([[[np.nanmean(padded[t:t + 4, h:h + 4, w:w + 4]) for w in range(2)]
                        for h in range(2)] for t in range(2)])
    np.testing.assert_allclose(Y[0, 0], expect, rtol=1e-5)
