"""Health checks: what is wrong with a training setup, found before and while it trains.

Two halves:

- `analyze_nets` reads the NetDefs only (nothing runs): an update that climbs the loss (Caffe2's
  sign convention), a learning-rate schedule that turns NaN or grows, BatchNorm layers that are
  "frozen" but still in training mode, pretrained blobs that the param_init_net re-fills.
- `HealthMonitor` watches a run: pretrained weights overwritten (at start-up), labels out of
  range and data on the wrong scale (per batch), loss stuck at chance, vanishing or exploding
  updates, frozen blobs that change (naming the op that writes them), a non-finite lr.

Every problem is a `Finding` whose message says what was seen, why it matters and what to change,
in Caffe and Caffe2 terms (lr_mult, propagate_down, use_global_stats / is_test, base_lr).
"""
import collections
import math

import numpy as np
import torch

from food101.caffe2.utils import GIVEN_FILLS, ArgsToDict, given_fill_value
from food101.data.records import key_text
from food101.diagnostics import netinfo
from food101.diagnostics.findings import ERROR, INFO, WARNING, Finding, Where, where_op

# Fills that draw new values; GivenTensor*Fill is how a zoo init_net loads pretrained weights.
RANDOM_OR_CONSTANT_FILLS = frozenset({
    "XavierFill", "MSRAFill", "GaussianFill", "UniformFill", "ConstantFill", "UniformIntFill",
    "RangeFill", "LengthsRangeFill", "DiagonalFill",
})
SATURATED_LOSS = -math.log(1e-20)  # LabelCrossEntropy's clamp: log(max(p, 1e-20))
ZOO_INPUT_NOTE = ("Model Zoo models (SqueezeNet, GoogLeNet, ...) were trained on BGR pixels in "
                  "0..255 with the per-channel mean (104, 117, 123) subtracted: values roughly "
                  "-123..151, sdev about 60")


# ------------------------------------------------------------------------------------------
# Static analysis
# ------------------------------------------------------------------------------------------
def analyze_nets(train_netdef, param_init_netdef=None, params=(), zoo_model=None, max_iter=None):
    """Findings about a training setup from its NetDefs alone.

    train_netdef / param_init_netdef: NetDef or core.Net; params: the trained param names
    (model.params); zoo_model: a ZooModel or {blob: array} of pretrained weights; max_iter: the
    number of iterations the run will train (for schedule checks)."""
    train = netinfo.as_netdef(train_netdef)
    init = netinfo.as_netdef(param_init_netdef) if param_init_netdef is not None else None
    params = {str(p) for p in params}
    findings = []
    findings += check_update_signs(train)
    findings += check_schedules(train, max_iter)
    findings += check_frozen_writes(train, params)
    findings += check_untrained_params(train, params)
    if init is not None and zoo_model is not None:
        findings += check_reinit_static(init, zoo_weights(zoo_model), params)
    return findings


def check_update_signs(train):
    """Updates that add the gradient (gradient ascent), given Caffe2's sign convention:
    WeightedSum([param, ONE, grad, LR]) computes param + LR * grad, so it needs LR < 0;
    MomentumSGDUpdate, Adam, ... compute param - LR * (...), so they need LR > 0."""
    findings = []
    ref = lambda i: netinfo.op_ref(train, i)  # noqa: E731
    for lr_index, lr_op in netinfo.learning_rate_ops(train):
        args = ArgsToDict(lr_op.arg)
        base_lr = args.get("base_lr")
        if base_lr is None or not lr_op.output:
            continue
        lr_blob = lr_op.output[0]
        built_by_optimizer = "Optimizer" in lr_blob or "optimizer" in lr_blob
        for index, op, pos, sign in netinfo.lr_consumers(train, lr_blob):
            effective = base_lr * sign
            if op.type == "WeightedSum":
                if pos != 3 or len(op.input) < 4 or op.output[0] != op.input[0]:
                    continue  # not the [param, ONE, grad, LR] update form
                if effective <= 0:
                    continue
                param, grad = op.input[0], op.input[2]
                if built_by_optimizer:
                    code, message = "negative_base_lr", (
                        "build_sgd was given a negative base_learning_rate (its LearningRate %s "
                        "writes %r with base_lr=%g, and %s WeightedSum computes %s = %s + "
                        "LR * %s with that positive LR): every update climbs the loss (gradient "
                        "ascent). build_sgd expects a positive base_learning_rate and applies "
                        "Caffe2's sign convention itself (it negates the rate for WeightedSum). "
                        "Fix: build_sgd(model, base_learning_rate=%g, ...)."
                        % (ref(lr_index), lr_blob, base_lr, ref(index), param, param, grad,
                           abs(base_lr)))
                else:
                    code, message = "gradient_ascent", (
                        "%s WeightedSum updates %r as %s = 1 * %s + LR * %s, and LR comes from "
                        "LearningRate %s with base_lr=%g > 0: the gradient is ADDED, so "
                        "training climbs the loss (gradient ascent; the loss rises or stays flat). "
                        "Caffe2's convention: WeightedSum adds its weighted inputs, so a plain SGD "
                        "update takes a NEGATIVE learning rate (LearningRate base_lr=%g); "
                        "MomentumSGDUpdate and the other optimizer ops subtract and take a "
                        "positive one. Fix: base_lr=%g, or use optimizer.build_sgd, which "
                        "chooses the sign." % (ref(index), param, param, param, grad, ref(lr_index),
                                               base_lr, -abs(base_lr), -abs(base_lr)))
                findings.append(Finding(code, ERROR, message,
                                        where_op(train.name, index, op, blob=param)))
            elif op.type in netinfo.UPDATE_OPS:
                if effective >= 0:
                    continue
                target = op.output[netinfo.UPDATE_OPS[op.type]] if op.output else "?"
                code = "negative_base_lr" if built_by_optimizer else "gradient_ascent"
                message = (
                    "%s %s updates %r with a negative learning rate (LearningRate %s, "
                    "base_lr=%g): %s subtracts LR x gradient, so a negative LR climbs the loss "
                    "(gradient ascent). %s" % (
                        ref(index), op.type, target, ref(lr_index), base_lr, op.type,
                        "build_sgd/build_* expect a positive base_learning_rate and apply "
                        "Caffe2's sign convention themselves; pass base_learning_rate=%g."
                        % abs(base_lr) if built_by_optimizer else
                        "Only WeightedSum updates take a negative rate; use base_lr=%g here."
                        % abs(base_lr)))
                findings.append(Finding(code, ERROR, message,
                                        where_op(train.name, index, op, blob=target)))
        if base_lr == 0:
            findings.append(Finding(
                "zero_lr", INFO,
                "LearningRate %s has base_lr=0: the params it drives never change. If the "
                "loss still changes from one iteration to the next, something other than the "
                "optimizer moves (training-mode BatchNorm statistics, Dropout, the data)."
                % ref(lr_index), where_op(train.name, lr_index, lr_op, blob=lr_blob)))
    return findings


def _schedule_warnings(policy, base_lr, max_iter, args):
    try:
        from food101.caffe2.ops.learning_rate import check_schedule
    except ImportError:  # pragma: no cover - the op family always ships with the package
        return []
    try:
        return check_schedule(policy, base_lr, max_iter, **args)
    except Exception as e:  # an unusable schedule is itself the finding
        return ["the schedule cannot be evaluated: %s" % e]


def _poly_rate(base_lr, it, power, max_iter):
    try:
        from food101.caffe2.ops.learning_rate import learning_rate
        return learning_rate("poly", it, base_lr, power=power, max_iter=max_iter)
    except Exception:
        base = 1.0 - it / max_iter
        try:
            return base_lr * math.pow(base, power)
        except ValueError:
            return math.nan


def check_schedules(train, max_iter=None):
    """The LearningRate ops' schedules over the planned run (poly past max_iter, ...)."""
    findings = []
    seen = set()
    for index, op in netinfo.learning_rate_ops(train):
        label = "LearningRate " + netinfo.op_ref(train, index)
        args = ArgsToDict(op.arg)
        policy = args.pop("policy", "fixed")
        base_lr = args.pop("base_lr", 0.0)
        # lr_mult groups give one LearningRate op per multiplier, all on one schedule: one
        # finding says it for all of them
        schedule = (policy, repr(sorted(args.items())), math.copysign(1.0, base_lr) if base_lr else 0.0)
        if schedule in seen:
            continue
        seen.add(schedule)
        where = where_op(train.name, index, op, blob=op.output[0] if op.output else None)
        poly_findings = []
        if policy == "poly":
            poly_max = args.get("max_iter")
            power = float(args.get("power", 0.0))
            if poly_max is None or poly_max <= 0:
                poly_findings.append(Finding(
                    "lr_poly_no_max_iter", ERROR,
                    "%s uses lr_policy 'poly' without a positive max_iter: poly "
                    "is base_lr * (1 - iter/max_iter)^power and only means something with max_iter "
                    "= the number of iterations you train (Caffe: the solver's max_iter). Caffe2 "
                    "takes a missing max_iter as -1, which it stores as 2^64-1, so the rate "
                    "never decays; with a small or negative max_iter it grows or turns NaN. Set "
                    "max_iter=%s." % (label, max_iter if max_iter else "<training iterations>"),
                    where))
            elif max_iter is not None and max_iter > poly_max:
                past = poly_max + 1
                rate = _poly_rate(base_lr, past, power, poly_max)
                integer = float(power).is_integer()
                consequence = (
                    "a negative number to the fractional power %g is NaN, so the rate becomes NaN "
                    "from iteration %d on and the first update with it turns every trained weight "
                    "into NaN" % (power, past) if not integer else
                    "with the integer power %g the rate %s (%g at iteration %d) instead of "
                    "staying at 0" % (power, "changes sign, so the updates climb the loss"
                                      if int(power) % 2 else "grows again", rate, past))
                poly_findings.append(Finding(
                    "lr_poly_past_max_iter", ERROR,
                    "%s: lr_policy 'poly' has max_iter=%d but the run trains %d "
                    "iterations. poly computes base_lr * (1 - iter/max_iter)^power; past max_iter "
                    "(1 - iter/max_iter) is negative: %s. Fix: make poly's max_iter equal to the "
                    "run's max_iter (Caffe uses the solver's max_iter for both)."
                    % (label, poly_max, max_iter, consequence), where))
            if 0 < power < 1:
                poly_findings.append(Finding(
                    "lr_poly_power", INFO,
                    "%s: poly power=%g < 1 keeps the rate near base_lr for most "
                    "of the run and drops it steeply only at the end (at 75%% of max_iter it is "
                    "still %.0f%% of base_lr); power=1 is a straight line to 0. This does not stop "
                    "a net from learning early on: if the loss is flat from the start, look at "
                    "base_lr, the data and the architecture instead. Past max_iter a fractional "
                    "power gives NaN." % (label, power, 100 * math.pow(0.25, power)), where))
        findings += poly_findings
        if max_iter:
            warnings = _schedule_warnings(policy, base_lr, max_iter, args)
            if poly_findings:  # the poly findings above already say it, in more words
                warnings = [w for w in warnings if not w.startswith("poly ")
                            and "NaN" not in w and "nan" not in w]
            for w in warnings:
                severity = WARNING if any(s in w for s in ("NaN", "nan", "sign", "grows")) else INFO
                findings.append(Finding(
                    "lr_schedule", severity,
                    "%s (policy %r, base_lr=%g, %d iterations): %s"
                    % (label, policy, base_lr, max_iter, w), where))
    return findings


def check_frozen_writes(train, params):
    """Blobs meant frozen (not params) that the net writes anyway: training-mode SpatialBN
    running statistics, optimizer updates of a blob that is not a param."""
    findings = []
    external = set(netinfo.read_before_written(train))
    for index, op in enumerate(train.op[:netinfo.forward_end(train)]):
        if op.type != "SpatialBN" or len(op.input) < 5:
            continue
        args = ArgsToDict(op.arg)
        if int(args.get("is_test", 0)):
            continue
        scale, bias, running_mean, running_var = op.input[1:5]
        if scale in params or bias in params:
            continue  # a trained BN layer: updating its statistics is normal
        written = [b for b in op.output[1:3] if b in (running_mean, running_var)]
        stats_text = " and ".join(repr(b) for b in written) if written else \
            "its running statistics %r and %r" % (running_mean, running_var)
        findings.append(Finding(
            "bn_running_stats_drift", ERROR,
            "running stats will drift: %s SpatialBN %r writes %s every iteration. Its scale "
            "%r and bias %r are not trained params, so the layer is meant to be frozen, but it "
            "runs in training mode (is_test=0): it normalises each batch with that batch's own "
            "mean/variance (the loss changes every iteration even with lr 0) and moves the "
            "running mean/variance towards them, so the pretrained statistics drift and test "
            "accuracy can fall to chance. lr_mult: 0, propagate_down: false or base_lr: 0 do not "
            "stop this: they only stop gradient updates. Fix: is_test=1 for frozen SpatialBN "
            "ops (Caffe: batch_norm_param { use_global_stats: true })."
            % (netinfo.op_ref(train, index), op.name or op.output[0], stats_text, scale, bias),
            where_op(train.name, index, op, blob=written[0] if written else running_mean)))
    targets, _aux = netinfo.update_targets(train)
    for blob, (index, op) in targets.items():
        if blob in params or not params or blob not in external:
            continue
        findings.append(Finding(
            "frozen_blob_updated", WARNING,
            "%s %s updates %r, which is not in the model's params (so it is meant to stay "
            "fixed): it changes every iteration. Register it as a param if it should train, or "
            "drop the update op." % (netinfo.op_ref(train, index), op.type, blob), where_op(train.name, index, op, blob)))
    return findings


def check_untrained_params(train, params):
    """Params that get a gradient but no update op (base_lr 0, lr_mult 0): they never move."""
    if not params or netinfo.forward_end(train) == len(train.op):
        return []  # no gradient section: an inference net, nothing is meant to train
    targets, _aux = netinfo.update_targets(train)
    idle = [p for p in sorted(params) if p not in targets]
    if not idle:
        return []
    return [Finding(
        "params_not_updated", INFO,
        "%d param(s) get gradients but no optimizer op updates them (%s): they stay fixed. "
        "build_sgd(base_learning_rate=0) builds no update, as in Caffe2, and Caffe's lr_mult: 0 "
        "means the same. If the loss still changes from one iteration to the next, something "
        "else moves: SpatialBN in training mode (is_test=0) normalising with each batch's "
        "statistics, Dropout, or simply different batches."
        % (len(idle), ", ".join(repr(p) for p in idle[:8]) + (" ..." if len(idle) > 8 else "")),
        Where(net=train.name, blob=idle[0]))]


def zoo_weights(zoo_model):
    """{blob: numpy array} of the pretrained values of a ZooModel (or of a zoo init NetDef): the
    GivenTensor*Fill ops only, because a random fill in a zoo init net (a classifier replaced by
    surgery) holds no pretrained values. A {blob: array} dict is taken as it is."""
    if zoo_model is None:
        return {}
    if isinstance(zoo_model, dict):
        return {str(k): np.asarray(v) for k, v in zoo_model.items()}
    netdef = netinfo.as_netdef(getattr(zoo_model, "init_net", zoo_model))
    return {op.output[0]: given_fill_value(op) for op in netdef.op
            if op.type in GIVEN_FILLS and len(op.output) == 1}


def check_not_pretrained(zoo_model):
    """A zoo model whose init net draws every value (XavierFill, ConstantFill, ...) and gives
    none (no GivenTensorFill): its backbone is not pretrained, whatever its folder is called."""
    if zoo_model is None or isinstance(zoo_model, dict):
        return []
    netdef = netinfo.as_netdef(getattr(zoo_model, "init_net", zoo_model))
    if not netdef.op or any(op.type in GIVEN_FILLS for op in netdef.op):
        return []
    fills = collections.Counter(op.type for op in netdef.op)
    where = getattr(zoo_model, "folder", None)
    return [Finding(
        "not_pretrained", WARNING,
        "the zoo model%s is not pretrained: its init net holds only random or constant fills "
        "(%s) and no GivenTensorFill with trained values, so every backbone weight is drawn at "
        "random when the run starts. Fine-tuning it is training from scratch: a frozen random "
        "backbone gives the new classifier features that carry almost no information (the loss "
        "stays near chance), and training every layer needs far more data and iterations than "
        "fine-tuning. Use the Model Zoo's pretrained init_net.pb (python tools/download_model.py "
        "squeezenet) or point --zoo-dir at a folder whose init_net.pb holds the trained values."
        % (" in " + str(where) if where else "",
           ", ".join("%s x%d" % kv for kv in sorted(fills.items()))), Where(net=netdef.name or None))]


def _fills(init):
    """{blob: (index, op, shape or None)} of the value-drawing fills in a param_init_net."""
    out = {}
    for index, op in enumerate(init.op):
        if op.type in RANDOM_OR_CONSTANT_FILLS and op.output:
            shape = ArgsToDict(op.arg).get("shape")
            for name in op.output:
                out[name] = (index, op, tuple(shape) if shape is not None else None)
    return out


def check_reinit_static(init, weights, params=()):
    """param_init_net fills that would overwrite a pretrained blob of the same shape."""
    findings = []
    for blob, (index, op, shape) in _fills(init).items():
        if blob not in weights:
            continue
        zoo_shape = tuple(weights[blob].shape)
        if shape is not None and shape != zoo_shape:
            continue  # a new layer that reuses a zoo name (the resized classifier): expected
        findings.append(Finding(
            "reinit_static", WARNING,
            "param_init_net %s %s fills %r, a pretrained Model Zoo blob of the same shape %s: "
            "if the param_init_net runs after the zoo weights are loaded, the pretrained values "
            "are replaced by random ones and the net trains from scratch (on Food-101 that means "
            "loss near ln(C) for thousands of iterations). Load the zoo weights after running "
            "the param_init_net, or do not create fills for pretrained layers."
            % (netinfo.op_ref(init, index), op.type, blob, list(zoo_shape)),
            where_op(init.name, index, op, blob)))
    return findings


def check_pretrained_values(blobs, weights, init=None, rtol=1e-5, atol=1e-6):
    """Findings for workspace blobs that carry a zoo blob's name and shape but not its values.

    blobs: {name: tensor} (the workspace after initialisation); weights: {name: array}."""
    fills = _fills(netinfo.as_netdef(init)) if init is not None else {}
    reinit = []
    for name, expected in weights.items():
        value = blobs.get(name)
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(expected.shape):
            continue
        ref = torch.as_tensor(np.asarray(expected), device=value.device).to(value.dtype)
        if torch.allclose(value, ref, rtol=rtol, atol=atol):
            continue
        reinit.append(name)
    if not reinit:
        return []
    filled = [n for n in reinit if n in fills]
    init_name = netinfo.as_netdef(init).name if init is not None else ""
    by_fill = ", ".join("%r by %s %s" % (n, netinfo.op_ref(init_name, fills[n][0]), fills[n][1].type)
                        for n in filled[:6])
    names = ", ".join(repr(n) for n in reinit[:8]) + (" ..." if len(reinit) > 8 else "")
    first = filled[0] if filled else reinit[0]
    where = (where_op(netinfo.as_netdef(init).name, fills[first][0], fills[first][1], first)
             if filled else Where(blob=first))
    return [Finding(
        "reinit_pretrained", ERROR,
        "pretrained weights were overwritten: %d blob(s) that have a Model Zoo blob's name and "
        "shape hold different values before training starts (%s)%s. The backbone now starts "
        "from random weights: expect the loss to stay near chance (ln C) with tiny gradients in "
        "the early layers for thousands of iterations. Load the zoo weights after the "
        "param_init_net has run (or drop the fills of pretrained layers; use fresh fills only "
        "for new layers such as the resized classifier)."
        % (len(reinit), names, "; re-initialised " + by_fill if filled else ""), where)]


# ------------------------------------------------------------------------------------------
# Runtime monitoring
# ------------------------------------------------------------------------------------------
def blob_dict(workspace):
    """The {name: value} dict of a Workspace object or of the workspace module's current one."""
    if hasattr(workspace, "current"):  # the module: its `blobs` is Caffe2's numpy view
        return workspace.current().blobs
    if hasattr(workspace, "blobs"):
        return workspace.blobs
    if isinstance(workspace, dict):
        return workspace
    raise TypeError("expected a food101.caffe2 Workspace, the workspace module or a dict, got %r"
                    % type(workspace).__name__)


def _as_tensor(value):
    if isinstance(value, torch.Tensor):
        return value.detach()
    return torch.as_tensor(np.asarray(value))


def chance_patience(configured, max_iter=None):
    """Iterations at chance before "stuck_at_chance": the configured patience, but at most a
    quarter of the run (at least 10), so a short run hears it too. 0 stays 0 (never)."""
    if not configured or not max_iter:
        return configured
    return max(1, min(int(configured), max(10, int(max_iter) // 4)))


class HealthMonitor:
    """Runtime health checks of one training run (see the module docstring).

        monitor = HealthMonitor(model.net, params=model.params, num_classes=101, zoo_model=zoo)
        monitor.on_start(ws, param_init_net)        # after init + zoo weights are in place
        for it ...:
            monitor.on_batch(data, labels, keys)
            (feed, RunNet)
            monitor.after_iteration(it, loss, ws)
    Each call returns the findings it produced (also kept in `findings`)."""

    def __init__(self, train_netdef, params, settings=None, num_classes=None, zoo_model=None,
                 expects_zoo_input=None, max_iter=None):
        from food101.diagnostics.settings import resolve_settings
        self.net = netinfo.as_netdef(train_netdef)
        self.params = [str(p) for p in params]
        self.settings = resolve_settings(settings)
        self.chance_patience = chance_patience(self.settings.chance_patience, max_iter)
        self.num_classes = num_classes
        self.zoo = zoo_weights(zoo_model)
        self.expects_zoo_input = bool(self.zoo) if expects_zoo_input is None else expects_zoo_input
        self.findings = []
        self._losses = collections.deque(maxlen=20)
        self._chance_since = None
        self._chance_reported = False
        self._saturation_reported = False
        self._ratio_snapshot = None       # (iteration, {param: tensor}) taken for the update ratio
        self.update_ratios = {}           # param -> last measured |update| / |weight|
        self._frozen = {}                 # blob -> (tensor, its _version) when fingerprinted
        self._frozen_sums = {}            # blob -> sha256 (zoo.frozen_checksums)
        self._frozen_reported = set()
        self._lr_blobs = [(i, op) for i, op in netinfo.learning_rate_ops(self.net) if op.output]
        self._probs_blob, self._label_blob = netinfo.loss_probabilities(self.net)
        self._conv_input = netinfo.first_conv_input(self.net)
        self._pending_labels = None

    # -------------------------------------------------------------- helpers
    def _emit(self, findings, iteration=None):
        out = []
        for f in findings:
            if iteration is not None and f.iteration is None:
                f = Finding(f.code, f.severity, f.message, f.where, iteration)
            self.findings.append(f)
            out.append(f)
        return out

    def frozen_candidates(self, blobs):
        """Blobs the net reads, that are not trained and should therefore never change:
        pretrained blobs, and blobs the net writes back although no optimizer owns them."""
        params = set(self.params)
        _targets, aux = netinfo.update_targets(self.net)
        written = netinfo.writers(self.net)
        state = set(netinfo.state_blobs(self.net))  # written back (not just passed through)
        out = []
        for name in netinfo.read_before_written(self.net):
            if name in params or name in aux:
                continue
            if any(p in params for i in written.get(name, ()) for p in self.net.op[i].input):
                continue  # state of a trained layer (a trained SpatialBN's running statistics)
            value = blobs.get(name)
            if not isinstance(value, torch.Tensor) or not value.is_floating_point():
                continue
            if name in self.zoo or name in state:
                out.append(name)
        return out

    # -------------------------------------------------------------- hooks
    def on_start(self, workspace, param_init_netdef=None, frozen_blobs=None):
        """After the params are initialised and the zoo weights loaded, before iteration 1:
        pretrained blobs overwritten; fingerprints the frozen blobs to watch (`frozen_blobs`,
        e.g. model.finetune.frozen_blobs, else `frozen_candidates`)."""
        from food101.zoo.finetune import frozen_checksums
        blobs = blob_dict(workspace)
        found = []
        if self.zoo:
            found += check_pretrained_values(blobs, self.zoo, param_init_netdef)
        names = list(frozen_blobs) if frozen_blobs is not None else self.frozen_candidates(blobs)
        names = [n for n in names if isinstance(blobs.get(n), torch.Tensor)]
        self._frozen = {n: (blobs[n], blobs[n]._version) for n in names}
        self._frozen_sums = frozen_checksums(names, blobs)  # the zoo's frozen-blob audit
        return self._emit(found, 0)

    def on_batch(self, data, labels=None, keys=None, iteration=None):
        """Checks one batch before it is fed: labels in [0, num_classes), float data scale.

        Host (numpy) labels are checked in every batch; device tensors, whose check costs a
        synchronisation, at iteration 1 and every health_interval iterations (the loss op
        itself refuses a label out of range, without naming the record)."""
        found = []
        interval = self.settings.health_interval
        due = iteration is None or iteration <= 1 or (interval and iteration % interval == 0)
        on_device = isinstance(labels, torch.Tensor) and labels.device.type != "cpu"
        if labels is not None and (due or not on_device):
            lab = _as_tensor(labels).reshape(-1)
            if lab.numel():
                if lab.is_floating_point():
                    found.append(Finding(
                        "label_dtype", ERROR,
                        "labels arrive as %s; LabelCrossEntropy/SoftmaxWithLoss/Accuracy take "
                        "int32 class indices (Caffe2 TensorProtos store them as INT32)."
                        % str(lab.dtype).replace("torch.", ""), Where(blob=self._label_blob)))
                else:
                    found += self._check_labels(lab, keys)
        if data is not None and self.expects_zoo_input and due:
            x = _as_tensor(data)
            if x.is_floating_point() and x.numel():
                finite = x[torch.isfinite(x)]
                if finite.numel():
                    lo, hi = float(finite.min()), float(finite.max())
                    if hi - lo <= 2.5:
                        found.append(Finding(
                            "input_scale", WARNING,
                            "the batch's pixels lie in [%.3g, %.3g], like data scaled to [0, 1] or "
                            "[-1, 1]. %s; at this scale the pretrained filters see inputs ~100x too "
                            "small, activations and gradients shrink layer by layer and the "
                            "classifier starts near chance. Feed 0..255 BGR and subtract the mean "
                            "(no Scale by 1/255, no normalisation to [-1, 1])."
                            % (lo, hi, ZOO_INPUT_NOTE), Where(blob=self._conv_input)))
        return self._emit(found, iteration)

    def _check_labels(self, lab, keys):
        if self.num_classes is None:
            self._pending_labels = (lab.clone(), list(keys) if keys is not None else None)
            return []
        lo, hi = int(lab.min()), int(lab.max())
        if lo >= 0 and hi < self.num_classes:
            return []
        bad = ((lab < 0) | (lab >= self.num_classes)).nonzero().reshape(-1).tolist()
        bad_keys = [keys[i] for i in bad[:5]] if keys is not None else []
        return [Finding(
            "label_range", ERROR,
            "labels outside [0, %d): this batch has labels from %d to %d (%d of %d out of range%s). "
            "The classifier has %d outputs, so a label must be a class index 0..%d: check the "
            "label column of the LMDB (tools/check_lmdb.py), the class list and model.num_classes "
            "(Caffe: num_output of the last InnerProduct/Convolution)."
            % (self.num_classes, lo, hi, len(bad), lab.numel(),
               "; keys " + ", ".join(key_text(k) for k in bad_keys) if bad_keys else "",
               self.num_classes, self.num_classes - 1), Where(blob=self._label_blob))]

    def after_iteration(self, it, loss, workspace):
        """Checks after iteration `it` ran (its loss as a float)."""
        blobs = blob_dict(workspace)
        s = self.settings
        found = []
        if self.num_classes is None and self._probs_blob in blobs:
            probs = blobs[self._probs_blob]
            if isinstance(probs, torch.Tensor) and probs.dim() >= 2:
                self.num_classes = int(probs.shape[1])
                if self._pending_labels is not None:
                    found += self._check_labels(*self._pending_labels)
                    self._pending_labels = None
        if loss is not None and math.isfinite(loss):
            found += self._check_chance(it, float(loss))
        interval = s.health_interval
        if it == 1 or (interval and it % interval == 0):
            found += self._check_input_scale(blobs)
            found += self._check_frozen(it, blobs)
            found += self._check_lr(blobs)
        if interval:
            found += self._check_update_ratio(it, blobs)
        return self._emit(found, it)

    def state_restored(self):
        """The guard put an earlier state back: measurements spanning the jump are void."""
        self._ratio_snapshot = None

    # -------------------------------------------------------------- the checks
    def _check_saturation(self, it):
        """LabelCrossEntropy clamps probabilities at 1e-20, so -ln(1e-20) = 46.05 per sample is
        the most a batch can lose: a running loss near it means the softmax is saturated."""
        if self._saturation_reported or len(self._losses) < self._losses.maxlen:
            return []
        mean = sum(self._losses) / len(self._losses)
        if mean < 0.5 * SATURATED_LOSS:
            return []
        self._saturation_reported = True
        return [Finding(
            "loss_saturated", WARNING,
            "the running loss is %.4g, near %.4g = -ln(1e-20), the largest value "
            "LabelCrossEntropy produces (it clamps probabilities at 1e-20): the softmax is "
            "saturated and puts ~0 probability on the true class of most images. This happens "
            "when the learning rate is far too high (the first updates blow the classifier's "
            "weights up) or the logits are huge (unnormalised inputs). Lower base_lr by 10x or "
            "more and check the input scale." % (mean, SATURATED_LOSS), Where(blob=self._probs_blob))]

    def _check_chance(self, it, loss):
        s = self.settings
        self._losses.append(loss)
        saturated = self._check_saturation(it)
        if saturated:
            return saturated
        if not s.chance_patience or not self.num_classes or self.num_classes < 2:
            return []
        chance = math.log(self.num_classes)
        mean = sum(self._losses) / len(self._losses)
        if abs(mean - chance) <= s.chance_tolerance * chance:
            if self._chance_since is None:
                self._chance_since = it
        else:
            self._chance_since = None
            self._chance_reported = False
            return []
        stuck_for = it - self._chance_since + 1
        if stuck_for < self.chance_patience or self._chance_reported:
            return []
        self._chance_reported = True  # once per stretch at chance
        causes = []
        codes = {f.code for f in self.findings}
        if "reinit_pretrained" in codes or "reinit_static" in codes:
            causes.append("the pretrained weights were re-initialised (see reinit_pretrained)")
        small = sorted((r, p) for p, r in self.update_ratios.items() if r < s.update_ratio_low)
        if small:
            causes.append("updates vanish: |update|/|weight| = %.2g for %r" % small[0])
        if "input_scale" in codes:
            causes.append("the input data is on the wrong scale (see input_scale)")
        if "vanishing_gradients" in codes:
            causes.append("gradients vanish before the early layers (see vanishing_gradients)")
        dead = [f.where.blob for f in self.findings if f.code == "dead_relu"]
        if dead:
            causes.append("ReLUs are dead (see dead_relu: %s)" % ", ".join(map(repr, dead[:3])))
        if "gradient_ascent" in codes or "negative_base_lr" in codes:
            causes.append("the updates climb the loss (see gradient_ascent)")
        return [Finding(
            "stuck_at_chance", WARNING,
            "the loss has stayed at chance for %d iterations (iterations %d-%d: running loss "
            "%.4g vs ln(%d) = %.4g, i.e. the net predicts every class with probability ~1/%d and "
            "learns nothing). %s Typical causes: pretrained weights overwritten by "
            "re-initialisation, gradients vanishing before the early layers (deep net, "
            "XavierFill everywhere, dead ReLUs), inputs on the wrong scale, a learning rate that "
            "is far too small or of the wrong sign, labels that do not match the images."
            % (stuck_for, self._chance_since, it, mean, self.num_classes, chance,
               self.num_classes, ("Evidence here: " + "; ".join(causes) + ".") if causes else ""),
            Where(blob=self._probs_blob))]

    def _check_input_scale(self, blobs):
        if not self.expects_zoo_input or self._conv_input not in blobs:
            return []
        x = blobs[self._conv_input]
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.numel() < 2:
            return []
        flat = x.detach().float().reshape(-1)
        flat = flat[torch.isfinite(flat)]
        if flat.numel() < 2:
            return []
        std, lo, hi = float(flat.std()), float(flat.min()), float(flat.max())
        low, high = self.settings.input_std_range
        if low <= std <= high:
            return []
        guess = ("[0, 1]" if lo >= -1e-6 and hi <= 1.0 + 1e-6 else
                 "[-1, 1]" if lo >= -1.0 - 1e-6 and hi <= 1.0 + 1e-6 else
                 "a scale far from 0..255" if std < low else "a larger scale than 0..255")
        return [Finding(
            "input_scale", WARNING,
            "the first Conv reads %r with sdev %.3g and range [%.3g, %.3g], which looks like "
            "data in %s. %s (expected sdev %g..%g). A zoo model fed differently scaled data "
            "computes features it was never trained on; with far smaller inputs activations "
            "and gradients shrink layer by layer. Fix the preprocessing (uint8 0..255 BGR, "
            "Sub the mean, no Scale by 1/255) rather than the learning rate."
            % (self._conv_input, std, lo, hi, guess, ZOO_INPUT_NOTE, low, high),
            Where(blob=self._conv_input))]

    def _check_frozen(self, it, blobs):
        from food101.zoo.finetune import audit_frozen
        # a blob still bound to the very tensor it started as, never written in place, is
        # unchanged for free (ops rebind names instead of mutating); only the others are hashed
        moved = [n for n, (ref, version) in self._frozen.items()
                 if n not in self._frozen_reported
                 and (blobs.get(n) is not ref or ref._version != version)]
        if not moved:
            return []
        audit = audit_frozen({n: self._frozen_sums[n] for n in moved}, moved, blobs)
        found = []
        for name in moved:
            if name in audit.changed or name in audit.missing:
                self._frozen_reported.add(name)
                found.append(self._frozen_changed(it, name, missing=name in audit.missing))
            elif isinstance(blobs.get(name), torch.Tensor):  # same bytes, new tensor: re-anchor
                self._frozen[name] = (blobs[name], blobs[name]._version)
        return found

    def _frozen_changed(self, it, name, missing=False):
        index, op = netinfo.last_writer(self.net, name)
        if op is None:
            cause = ("No op of the training net %r writes it, so it was changed from outside the "
                     "net (a FeedBlob, a checkpoint load, another net)." % self.net.name)
            where = Where(net=self.net.name, blob=name)
        elif op.type == "SpatialBN":
            cause = ("It is written by %s SpatialBN %r, which runs in training mode (is_test=0) "
                     "and updates its running mean/variance from every batch; lr_mult: 0, "
                     "propagate_down: false or base_lr: 0 do not prevent that. Set is_test=1 on "
                     "frozen SpatialBN ops (Caffe: use_global_stats: true)."
                     % (netinfo.op_ref(self.net, index), op.name or op.output[0]))
            where = where_op(self.net.name, index, op, name)
        else:
            cause = ("It is written by %s %s%s; remove that write or register %r as a param if "
                     "it is meant to train." % (netinfo.op_ref(self.net, index), op.type, " %r" % op.name if op.name else "",
                                                name))
            where = where_op(self.net.name, index, op, name)
        return Finding(
            "frozen_blob_changed", ERROR,
            "frozen blob %r %s by iteration %d although it is not a trained param (the frozen-blob "
            "audit's checksum differs). %s" % (name, "disappeared" if missing else "changed", it,
                                              cause), where)

    def _check_lr(self, blobs):
        found = []
        for index, op in self._lr_blobs:
            value = blobs.get(op.output[0])
            if not isinstance(value, torch.Tensor) or value.numel() != 1:
                continue
            rate = float(value.reshape(-1)[0])
            base_lr = ArgsToDict(op.arg).get("base_lr", 0.0)
            if not math.isfinite(rate):
                found.append(Finding(
                    "lr_nonfinite", ERROR,
                    "the learning rate %r is %r (LearningRate %s, policy %r): the next update "
                    "writes NaN into every trained weight. For poly this happens past max_iter."
                    % (op.output[0], rate, netinfo.op_ref(self.net, index),
                       ArgsToDict(op.arg).get("policy")),
                    where_op(self.net.name, index, op, op.output[0])))
            elif base_lr and rate * base_lr < 0:
                found.append(Finding(
                    "lr_sign_flip", ERROR,
                    "the learning rate %r is %g although base_lr is %g (LearningRate %s): the "
                    "schedule flipped its sign and the updates now climb the loss."
                    % (op.output[0], rate, base_lr, netinfo.op_ref(self.net, index)),
                    where_op(self.net.name, index, op, op.output[0])))
        return found

    def _check_update_ratio(self, it, blobs):
        s = self.settings
        found = []
        if self._ratio_snapshot is not None and it == self._ratio_snapshot[0] + 1:
            _, before = self._ratio_snapshot
            self._ratio_snapshot = None
            low, high = [], []
            updated, _aux = netinfo.update_targets(self.net)
            for p, old in before.items():
                if p not in updated:
                    continue  # no optimizer op: params_not_updated says so once
                new = blobs.get(p)
                if not isinstance(new, torch.Tensor) or new.shape != old.shape:
                    continue
                w = float(torch.linalg.vector_norm(old.float()))
                if w == 0:
                    continue
                ratio = float(torch.linalg.vector_norm((new.detach() - old).float())) / w
                self.update_ratios[p] = ratio
                if old.dim() < 2:
                    continue  # biases start at 0: their ratio says little
                if ratio < s.update_ratio_low:
                    low.append((ratio, p))
                elif ratio > s.update_ratio_high:
                    high.append((ratio, p))
            if low:
                low.sort()
                grads = []
                for ratio, p in low[:4]:
                    g = blobs.get(p + "_grad")
                    if isinstance(g, torch.Tensor):
                        grads.append("%s_grad mean %.2g sdev %.2g" % (
                            p, float(g.float().mean()), float(g.float().std()) if g.numel() > 1 else 0))
                found.append(Finding(
                    "vanishing_updates", WARNING,
                    "updates are vanishingly small relative to the weights at iteration %d: "
                    "|update|/|weight| = %s (a healthy run is around 1e-3; below %g the param "
                    "effectively does not train)%s. The gradient dies on its way back: deep "
                    "stacks with small-variance init (XavierFill on every layer), dead ReLUs, "
                    "inputs on a far too small scale, or a learning rate orders of magnitude too "
                    "small. Start from pretrained weights, check the input scale, or raise the lr "
                    "of these layers." % (
                        it, ", ".join("%.2g for %r" % rp for rp in low[:6]), s.update_ratio_low,
                        " (" + "; ".join(grads) + ")" if grads else ""),
                    Where(blob=low[0][1])))
            if high:
                high.sort(reverse=True)
                found.append(Finding(
                    "large_updates", WARNING,
                    "updates are large relative to the weights at iteration %d: "
                    "|update|/|weight| = %s (above %g): one step rewrites a sizeable part of the "
                    "weight; the loss is likely to oscillate or diverge. Lower base_lr (or that "
                    "layer's lr_mult)." % (it, ", ".join("%.2g for %r" % rp for rp in high[:6]),
                                           s.update_ratio_high), Where(blob=high[0][1])))
        if it % s.health_interval == 0 or it == 1:
            snap = {p: blobs[p].detach().clone() for p in self.params
                    if isinstance(blobs.get(p), torch.Tensor) and blobs[p].is_floating_point()}
            self._ratio_snapshot = (it, snap)
        return found
