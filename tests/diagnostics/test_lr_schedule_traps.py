"""Story 2: a Keras net ported to Caffe never learns (loss flat): among the changes, the optimizer
and `lr_policy: poly` with `power: 0.5`.

What the diagnostics must say before a single iteration runs: poly past its max_iter (NaN for a
fractional power), poly without max_iter, what power < 1 does; an update that climbs the loss
(Caffe2's sign convention: WeightedSum takes a negative rate, MomentumSGDUpdate a positive one).
And at run time: the NaN rate shows in the divergence report when it strikes.
"""
import numpy as np
import pytest

from food101.caffe2 import brew, model_helper, optimizer, workspace
from food101.diagnostics import ERROR, INFO, Diagnostics, analyze_nets


def small_model(name="story2"):
    model = model_helper.ModelHelper(name=name)
    brew.fc(model, "data", "fc", 4, 3)
    model.net.SoftmaxWithLoss(["fc", "label"], ["prob", "loss"])
    model.AddGradientOperators(["loss"])
    return model


def codes(findings):
    return {f.code: f for f in findings}


def test_poly_past_max_iter_is_flagged_before_training():
    model = small_model()
    optimizer.build_sgd(model, base_learning_rate=0.01, policy="poly", power=0.5, max_iter=100,
                        momentum=0.9)
    found = codes(analyze_nets(model.net, model.param_init_net, model.params, max_iter=150))
    past = found["lr_poly_past_max_iter"]
    assert past.severity == ERROR
    assert "max_iter=100 but the run trains 150 iterations" in past.message
    assert "NaN" in past.message and "power 0.5" in past.message
    assert "from iteration 101" in past.message
    assert past.where.op_type == "LearningRate"
    power = found["lr_poly_power"]
    assert power.severity == INFO and "power=0.5 < 1" in power.message
    # the schedule checker's own words are kept for what the poly findings do not cover
    assert all("NaN" not in f.message for f in found.values() if f.code == "lr_schedule")


def test_poly_with_an_integer_power_past_max_iter_explains_the_sign_flip():
    model = small_model()
    optimizer.build_sgd(model, base_learning_rate=0.01, policy="poly", power=1.0, max_iter=100,
                        momentum=0.9)
    past = codes(analyze_nets(model.net, params=model.params, max_iter=120))["lr_poly_past_max_iter"]
    assert "changes sign" in past.message


def test_poly_without_max_iter_is_flagged():
    model = small_model()
    optimizer.build_sgd(model, base_learning_rate=0.01, policy="poly", power=0.5, momentum=0.9)
    found = codes(analyze_nets(model.net, params=model.params, max_iter=1000))
    assert "lr_poly_no_max_iter" in found
    assert "max_iter=1000" in found["lr_poly_no_max_iter"].message


def test_a_sane_poly_schedule_is_quiet():
    model = small_model()
    optimizer.build_sgd(model, base_learning_rate=0.01, policy="poly", power=1.0, max_iter=200,
                        momentum=0.9)
    found = analyze_nets(model.net, model.param_init_net, model.params, max_iter=200)
    assert [str(f) for f in found if f.severity != INFO] == []


def test_positive_lr_into_weighted_sum_is_gradient_ascent():
    model = small_model()
    iteration = brew.iter(model, "iter")
    lr = model.net.LearningRate(iteration, "LR", base_lr=0.1, policy="fixed")  # should be -0.1
    one = model.param_init_net.ConstantFill([], "ONE", shape=[1], value=1.0)
    for param in model.params:
        model.net.WeightedSum([param, one, model.param_to_grad[param], lr], param)
    found = [f for f in analyze_nets(model.net, params=model.params) if f.code == "gradient_ascent"]
    assert {f.where.blob for f in found} == {"fc_w", "fc_b"}
    message = found[0].message
    assert "gradient ascent" in message and "NEGATIVE learning rate" in message
    assert "base_lr=-0.1" in message and "MomentumSGDUpdate" in message


def test_negative_base_learning_rate_reaching_an_sgd_net_is_flagged():
    model = small_model()
    with pytest.raises(ValueError, match="must be positive"):  # build_sgd refuses it, as Caffe2
        optimizer.build_sgd(model, base_learning_rate=-0.01, policy="fixed")
    optimizer.build_sgd(model, base_learning_rate=0.01, policy="fixed", momentum=0.9)
    # a net built or edited elsewhere (an old build, a hand-edited .pbtxt) carries the sign flip
    for op in model.net.Proto().op:
        if op.type == "LearningRate":
            for arg in op.arg:
                if arg.name == "base_lr":
                    arg.f = -arg.f
    found = [f for f in analyze_nets(model.net, params=model.params) if f.code == "negative_base_lr"]
    assert found and found[0].where.op_type == "MomentumSGDUpdate"
    assert "base_learning_rate=0.01" in found[0].message


def test_nan_rate_past_max_iter_shows_in_the_divergence_report(tmp_path):
    model = small_model()
    optimizer.build_sgd(model, base_learning_rate=0.1, policy="poly", power=0.5, max_iter=4,
                        momentum=0.9)
    rng = np.random.RandomState(0)
    workspace.FeedBlob("data", rng.randn(6, 4).astype(np.float32))
    workspace.FeedBlob("label", rng.randint(0, 3, 6).astype(np.int32))
    workspace.RunNetOnce(model.param_init_net)
    workspace.CreateNet(model.net)
    diag = Diagnostics({"divergence_policy": "stop", "stats_interval": 0, "health_interval": 1,
                        "spike_warmup": 100}, output_dir=str(tmp_path), num_classes=3, max_iter=8)
    start = diag.on_start(model.net, model.param_init_net, model.params, workspace)
    assert "lr_poly_past_max_iter" in [f.code for f in start]
    actions = []
    for it in range(1, 9):
        diag.on_batch(it, workspace.FetchBlob("data"), workspace.FetchBlob("label"))
        workspace.RunNet(model.net)
        actions.append(diag.after_iteration(it, float(workspace.FetchBlob("loss")), workspace))
        if actions[-1] == "stop":
            break
    assert actions[-1] == "stop" and len(actions) < 8
    assert "lr_nonfinite" in diag.codes()
    report = diag.reports[-1]
    assert report.reason == "nonfinite_loss"
    assert any(np.isnan(v) for v in report.learning_rates.values())
    # the NaN entered through the weights the previous update wrote
    assert report.first_nonfinite[0]["stage"] == "input"
    assert report.first_nonfinite[0]["blob"] in ("fc_w", "fc_b")


def test_lr_mult_groups_on_one_schedule_give_one_finding():
    """Caffe's lr_mult makes one LearningRate op per multiplier (weights x1, biases x2), all on
    the same poly schedule: the schedule is reported once, not once per op."""
    model = small_model("groups")
    doubled = optimizer.SgdOptimizer(0.02, policy="poly", power=0.5, max_iter=100, momentum=0.9)
    model.get_param_info(model.params[1]).optimizer = doubled   # the bias, lr_mult 2
    optimizer.build_sgd(model, base_learning_rate=0.01, policy="poly", power=0.5, max_iter=100,
                        momentum=0.9)
    ops = [op for op in model.net.Proto().op if op.type == "LearningRate"]
    assert len(ops) == 2
    found = analyze_nets(model.net, model.param_init_net, model.params, max_iter=100)
    assert [f.code for f in found].count("lr_poly_power") == 1
