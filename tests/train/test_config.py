"""The training config: documented defaults, YAML / solver.prototxt / --set merging, errors, and
the LR schedule the driver uses against the LearningRate op."""
import os

import numpy as np
import pytest
import yaml

from food101.train import config as C
from food101.interop.caffe import caffe_pb2, netfile
from food101.train.config import ConfigError, load_config, solver_updates
from tests.support import REPO

ROOT = REPO
CONFIGS = os.path.join(ROOT, "configs")


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ------------------------------------------------------------------------------ the tree
def test_every_key_has_a_default_and_a_comment():
    keys = C.all_keys()
    assert len(keys) > 30
    for key in keys:
        assert len(C.key_doc(key)) > 10, key
        C.get(C.default_config(), key)  # has a default
    C.validate(C.default_config())


def test_config_is_frozen():
    cfg = C.default_config()
    with pytest.raises(Exception):
        cfg.solver.base_lr = 1.0


def test_dump_is_commented_and_round_trips(tmp_path):
    cfg = load_config(overrides=["solver.stepvalue=[10, 20]", "solver.lr_policy=multistep",
                                 "data.mean=[1, 2, 3]", "train.output_dir=/x/y"])
    path = str(tmp_path / "effective.yaml")
    text = C.dump_config(cfg, path)
    for key in C.all_keys():
        section, name = key.split(".")
        assert "# " + C.key_doc(key) in text
        assert "\n  %s:" % name in text
    assert load_config(path) == cfg
    assert C.from_dict(C.to_dict(cfg)) == cfg


def test_shipped_yaml_documents_every_key_and_loads():
    path = os.path.join(CONFIGS, "food101_squeezenet.yaml")
    assert open(path).read() == C.documented_defaults(), (
        "configs/food101_squeezenet.yaml is out of date; regenerate it (see config.py, the end)")
    data = yaml.safe_load(open(path))
    flat = {"%s.%s" % (s, k) for s, section in data.items() for k in section}
    assert flat == set(C.all_keys()), "configs/food101_squeezenet.yaml must list every key"
    text = open(path).read()
    for key in C.all_keys():
        assert C.key_doc(key) in text, key
    cfg = load_config(path)
    assert cfg.model.num_classes == 0   # the train LMDB's class count


def test_shipped_solver_prototxt_loads():
    cfg = load_config(solver_path=os.path.join(CONFIGS, "solver.prototxt"))
    assert cfg.solver.lr_policy in C.CAFFE_LR_POLICIES


# ------------------------------------------------------------------------------ solver.prototxt
FULL_SOLVER = """
# every SolverParameter field the driver maps
base_lr: 0.04            # inline comment
lr_policy: "multistep"
gamma: 0.5
power: 0.75
stepsize: 123
stepvalue: 100
stepvalue: 200  stepvalue: 300
max_iter: 400
momentum: 0.85
weight_decay: 2e-4
test_iter: 7
test_interval: 50
test_initialization: true
display: 10
average_loss: 5
snapshot: 100
snapshot_prefix: 'snapshots/sq "v1.1"'
solver_mode: GPU
device_id: 1
random_seed: 1701
iter_size: 4
type: "SGD"
regularization_type: "L2"
"""


def test_each_caffe_solver_field_is_parsed(tmp_path):
    cfg = load_config(solver_path=write(tmp_path, "solver.prototxt", FULL_SOLVER))
    s = cfg.solver
    assert (s.base_lr, s.lr_policy, s.gamma, s.power, s.stepsize) == (0.04, "multistep", 0.5, 0.75, 123)
    assert s.stepvalue == (100, 200, 300)
    assert (s.max_iter, s.momentum, s.weight_decay) == (400, 0.85, 2e-4)
    assert (s.test_iter, s.test_interval, s.test_initialization) == (7, 50, True)
    assert (s.display, s.average_loss, s.snapshot) == (10, 5, 100)
    assert s.snapshot_prefix == 'snapshots/sq "v1.1"'
    assert (s.solver_mode, s.device_id, s.random_seed, s.iter_size) == ("GPU", 1, 1701, 4)
    assert s.nesterov is False
    # every mapped Caffe field appears in the fixture above
    parsed = netfile.parse_text(FULL_SOLVER, caffe_pb2.SolverParameter())
    mentioned = {f.name for f, _ in parsed.ListFields()}
    assert set(C.CAFFE_SOLVER_FIELDS) - mentioned == {"solver_type"}


@pytest.mark.parametrize("text, expected", [
    ('type: "Nesterov"', True), ('type: "SGD"', False), ("solver_type: NESTEROV", True),
])
def test_solver_type_sets_nesterov(text, expected):
    solver = netfile.parse_text(text, caffe_pb2.SolverParameter())
    assert solver_updates(solver)["solver.nesterov"] is expected


def test_prototxt_syntax_variants(tmp_path):
    """Protobuf text format as Caffe writes it: comments, lists, quotes, several fields a line."""
    path = write(tmp_path, "s.prototxt", 'base_lr: 0.5 max_iter: 9 # display: 3\n'
                                         'stepvalue: [1, 2,3] lr_policy: \'multistep\'\n'
                                         'snapshot_prefix: "a \\"b\\""\n')
    s = load_config(solver_path=path).solver
    assert (s.base_lr, s.max_iter, s.stepvalue, s.lr_policy) == (0.5, 9, (1, 2, 3), "multistep")
    assert s.snapshot_prefix == 'a "b"' and s.display == C.default_config().solver.display


def test_solver_net_line_is_followed(tmp_path, monkeypatch):
    """`net:` relative to the working directory (Caffe's rule), else to the solver file, else
    the file of that name beside the solver."""
    (tmp_path / "caffe" / "models").mkdir(parents=True)
    (tmp_path / "caffe" / "models" / "train_val.prototxt").write_text("name: 'x'")
    solver = tmp_path / "caffe" / "models" / "solver.prototxt"
    solver.write_text('net: "models/train_val.prototxt"\nbase_lr: 0.1\n')
    monkeypatch.chdir(tmp_path / "caffe")  # `caffe train` from the Caffe root
    net = str(tmp_path / "caffe" / "models" / "train_val.prototxt")
    assert load_config(solver_path=str(solver)).model.caffe_net == net
    monkeypatch.chdir(tmp_path)  # elsewhere: found beside the solver
    assert load_config(solver_path=str(solver)).model.caffe_net == net
    solver.write_text('net: "train_val.prototxt"\n')
    assert load_config(solver_path=str(solver)).model.caffe_net == net
    solver.write_text('net: "nowhere/else.prototxt"\n')
    with pytest.raises(ConfigError, match="net 'nowhere/else.prototxt' not found"):
        load_config(solver_path=str(solver))


@pytest.mark.parametrize("text, message", [
    ("base_lrr: 0.1", "unknown solver field 'base_lrr'; did you mean base_lr"),
    ("lr_polcy: \"step\"", "did you mean lr_policy"),
    ('train_net: "train.prototxt"', "field 'train_net' is not supported"),
    ("clip_gradients: 10", "'clip_gradients' is valid Caffe but not supported"),
    ("test_iter: 10\ntest_iter: 20", "one test net"),
    ('type: "Adam"', "'Adam' is not supported"),
    ('regularization_type: "L1"', "only \"L2\""),
    ("base_lr: fast", "Couldn't parse float: fast"),
    ('lr_policy: "steps"', "unknown policy 'steps' (did you mean step"),
    ("base_lr: 0.1 {", "bad.prototxt"),
])
def test_solver_errors_name_the_field(tmp_path, text, message):
    with pytest.raises(ConfigError) as e:
        load_config(solver_path=write(tmp_path, "bad.prototxt", text))
    assert message in str(e.value)


# ------------------------------------------------------------------------------ merging
def test_precedence_yaml_then_solver_then_command_line(tmp_path):
    y = write(tmp_path, "c.yaml", "solver:\n  base_lr: 0.5\n  momentum: 0.5\n  display: 3\n"
                                  "data:\n  batch_size: 7\n")
    s = write(tmp_path, "s.prototxt", "base_lr: 0.25\nmomentum: 0.8\n")
    cfg = load_config(y, s, ["solver.base_lr=0.125", "data.mirror=false"])
    assert cfg.solver.base_lr == 0.125        # command line wins
    assert cfg.solver.momentum == 0.8         # prototxt over YAML
    assert cfg.solver.display == 3            # YAML over defaults
    assert cfg.data.batch_size == 7 and cfg.data.mirror is False
    assert cfg.solver.weight_decay == C.default_config().solver.weight_decay


@pytest.mark.parametrize("override, message", [
    ("solver.base_lrr=1", "unknown config key 'solver.base_lrr'; did you mean solver.base_lr"),
    ("solver.batch_size=8", "did you mean data.batch_size"),
    ("nothing=1", "unknown config key 'nothing'"),
    ("data.batch_size=eight", "data.batch_size: expected an integer"),
    ("data.mirror=maybe", "data.mirror: expected true or false"),
    ("solver.iter_size=0", "solver.iter_size must be >= 1"),
    ("solver.solver_mode=TPU", "CPU or GPU"),
    ("solver_base_lr", "expected KEY=VALUE"),
])
def test_override_errors(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[override])
    assert message in str(e.value)


def test_yaml_unknown_key_names_the_file(tmp_path):
    y = write(tmp_path, "c.yaml", "solver:\n  max_iters: 10\n")
    with pytest.raises(ConfigError) as e:
        load_config(y)
    assert "c.yaml" in str(e.value) and "solver.max_iter" in str(e.value)


def test_multistep_needs_increasing_stepvalues():
    with pytest.raises(ConfigError, match="stepvalue"):
        load_config(overrides=["solver.lr_policy=multistep"])
    with pytest.raises(ConfigError, match="strictly increasing"):
        load_config(overrides=["solver.lr_policy=multistep", "solver.stepvalue=[20, 10]"])


def test_random_seed_is_resolved_once():
    cfg = C.resolve_seed(C.default_config())
    assert cfg.solver.random_seed >= 0
    assert C.resolve_seed(cfg) == cfg


# ------------------------------------------------------------------------------ LR schedule
POLICY_CONFIGS = {
    "fixed": [],
    "step": ["solver.stepsize=7", "solver.gamma=0.5"],
    "multistep": ["solver.stepvalue=[5, 12, 30]", "solver.gamma=0.3"],
    "exp": ["solver.gamma=0.97"],
    "inv": ["solver.gamma=0.01", "solver.power=0.75"],
    "poly": ["solver.power=2.0", "solver.max_iter=40"],
    "sigmoid": ["solver.gamma=-0.2", "solver.stepsize=20"],
}


@pytest.mark.parametrize("policy", sorted(POLICY_CONFIGS))
def test_driver_schedule_equals_learning_rate_op(policy):
    from food101.caffe2 import core, workspace
    from food101.train import schedule
    cfg = load_config(overrides=["solver.lr_policy=" + policy, "solver.base_lr=0.05",
                                 "solver.max_iter=40"] + POLICY_CONFIGS[policy])
    driver = schedule.rates(cfg.solver)
    assert sorted(driver) == list(range(1, 41))
    args = C.lr_policy_args(cfg.solver)
    for it in range(1, 41):
        workspace.FeedBlob("ITER", np.array([it], dtype=np.int64))
        workspace.RunOperatorOnce(core.CreateOperator(
            "LearningRate", ["ITER"], ["LR"], base_lr=cfg.solver.base_lr, policy=policy, **args))
        op_value = float(workspace.FetchBlob("LR")[0])
        assert op_value == driver[it], (policy, it)
    assert driver[1] > 0


def test_caffe_policy_formulas():
    """The Caffe formulas, written out, on a few iterations (float32 rounding allowed)."""
    from food101.train import schedule
    base = 0.1

    def rate(policy, it, *overrides):
        cfg = load_config(overrides=["solver.lr_policy=" + policy, "solver.base_lr=%r" % base,
                                     "solver.max_iter=100"] + list(overrides))
        return schedule.rate_at(cfg.solver, it)

    assert rate("step", 25, "solver.stepsize=10", "solver.gamma=0.5") == pytest.approx(base * 0.25)
    assert rate("multistep", 25, "solver.stepvalue=[10, 20, 30]", "solver.gamma=0.5") == \
        pytest.approx(base * 0.25)
    assert rate("exp", 10, "solver.gamma=0.9") == pytest.approx(base * 0.9 ** 10, rel=1e-6)
    assert rate("inv", 10, "solver.gamma=0.1", "solver.power=0.5") == \
        pytest.approx(base * (1 + 0.1 * 10) ** -0.5, rel=1e-6)
    assert rate("poly", 50, "solver.power=2") == pytest.approx(base * 0.25, rel=1e-6)
    assert rate("sigmoid", 30, "solver.gamma=-0.1", "solver.stepsize=20") == \
        pytest.approx(base / (1 + np.exp(0.1 * 10)), rel=1e-6)
