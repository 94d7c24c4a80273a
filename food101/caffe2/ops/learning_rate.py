"""Iteration counters and learning-rate schedules: Iter, AtomicIter, CreateMutex, LearningRate.

Every learning-rate policy is one small pure-Python function in `LR_POLICIES`. Each returns
Caffe2's *multiplier* for an iteration; the rate is `base_lr * multiplier`, as Caffe2's
LearningRateOp computes it. The LearningRate op, the training driver (`learning_rate`) and
the diagnostics (`check_schedule`) all use this one table, so a schedule can never mean two
different things:

    learning_rate("step", 25, 0.1, stepsize=10, gamma=0.5)   # 0.1 * 0.5**2 = 0.025

Caffe2 computes in float32 (`T = float`): the functions round where the C++ code stores a
float, so the values match real Caffe2 to about one float32 ulp.

Sign convention: plain SGD in Caffe2 is `WeightedSum([param, ONE, grad, LR])`, so its base_lr
is negative; MomentumSGDUpdate and Adam subtract/add the update themselves and take the sign
their optimizer builder chooses. The schedule only scales base_lr and keeps its sign.

`multistep` and `sigmoid` are Caffe (solver.prototxt) policies that real Caffe2 does not have;
they are here so Caffe solver files load, and are marked as such.
"""
import bisect
import inspect
import logging
import math
import struct
import threading

import torch

from food101.caffe2.errors import OperatorError, closest, enforce
from food101.caffe2.ops.registry import operator
from food101.caffe2.utils import ArgsToDict, set_arg

log = logging.getLogger(__name__)


class LRPolicyError(OperatorError, ValueError):
    """An unknown learning-rate policy or an argument it cannot work with."""


# --------------------------------------------------------------------------------------
# float32 arithmetic as the C++ code does it
# --------------------------------------------------------------------------------------
def _f32(x):
    """Round a Python float to the nearest float32 (what storing into a C++ `float` does)."""
    try:
        return struct.unpack("f", struct.pack("f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def _pow(base, exponent):
    """C's pow: NaN for a negative base with a fractional exponent, inf on overflow."""
    try:
        return math.pow(base, exponent)
    except OverflowError:
        return math.inf
    except ValueError:  # negative ** fractional, or 0 ** negative
        return math.inf if base == 0 else math.nan


def _trunc_div(a, b):
    """C integer division (rounds toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _require(condition, message):
    if not condition:
        raise LRPolicyError(message)


# --------------------------------------------------------------------------------------
# The policies. Each: multiplier(iteration, **caffe2_args) with Caffe2's argument defaults.
# --------------------------------------------------------------------------------------
def lr_fixed(it):
    """1: the rate stays base_lr.

    Example: base_lr=0.1 -> 0.1 at every iteration.
    """
    return 1.0


def lr_step(it, stepsize=0, gamma=0.0):
    """gamma ** floor(it / stepsize).

    Example: stepsize=10, gamma=0.5, base_lr=0.1: iterations 0-9 -> 0.1, 10-19 -> 0.05,
    20-29 -> 0.025.
    """
    _require(stepsize > 0, "policy 'step' needs stepsize > 0, got stepsize=%r" % (stepsize,))
    return _f32(_pow(_f32(gamma), float(_trunc_div(it, stepsize))))


def lr_exp(it, gamma=0.0):
    """gamma ** it.

    Example: gamma=0.99, base_lr=0.1: iteration 0 -> 0.1, 1 -> 0.099, 100 -> 0.0366.
    """
    return _f32(_pow(_f32(gamma), float(_f32(it))))


def lr_gate(it, multiplier_1=1.0, multiplier_2=1.0, num_iter=0):
    """multiplier_1 before num_iter, multiplier_2 from num_iter on.

    Example: multiplier_1=1, multiplier_2=0.1, num_iter=100, base_lr=0.1: iterations 0-99 ->
    0.1, from 100 -> 0.01.
    """
    return _f32(multiplier_2) if it >= num_iter else _f32(multiplier_1)


def lr_inv(it, gamma=0.0, power=0.0):
    """(1 + gamma * it) ** -power.

    Example: gamma=1e-3, power=0.75, base_lr=0.1: iteration 0 -> 0.1, 1000 -> 0.0595.
    """
    base = _f32(1.0 + _f32(_f32(gamma) * _f32(it)))
    return _f32(_pow(base, -_f32(power)))


def lr_poly(it, power=0.0, max_iter=-1):
    """(1 - it / max_iter) ** power.

    Example: power=0.5, max_iter=1000, base_lr=0.1: iteration 0 -> 0.1, 750 -> 0.05,
    999 -> 0.00316. Caffe2 keeps max_iter as uint64, so the default -1 means 2**64 - 1 and the
    rate stays at base_lr; past max_iter the base is negative (NaN for a fractional power).
    """
    _require(max_iter != 0, "policy 'poly' needs max_iter != 0")
    denominator = _f32(float(max_iter % 2 ** 64))
    base = _f32(1.0 - _f32(_f32(it) / denominator))
    return _f32(_pow(base, _f32(power)))


def lr_linear_warmup(it, start_multiplier=0.0, num_iter=0):
    """start_multiplier + (1 - start_multiplier) * it / num_iter before num_iter, then 1.

    Example: start_multiplier=0.1, num_iter=50, base_lr=0.1: iteration 0 -> 0.01,
    25 -> 0.055, from 50 -> 0.1.
    """
    if it >= num_iter:
        return 1.0
    start = _f32(start_multiplier)
    return _f32(start + (1.0 - start) * _f32(it) / _f32(num_iter))


def lr_constant_warmup(it, multiplier=0.5, num_iter=0):
    """multiplier before num_iter, then 1.

    Example: multiplier=0.2, num_iter=30, base_lr=0.1: iterations 0-29 -> 0.02, from 30 -> 0.1.
    """
    return 1.0 if it >= num_iter else _f32(multiplier)


def lr_piece_warmup(it, m1=0.5, n1=0, m2=0.5, n2=0, m3=0.5):
    """m1 before n1, m2 before n2, then m3.

    Example: m1=0.1, n1=10, m2=0.5, n2=20, m3=1, base_lr=0.1: 0-9 -> 0.01, 10-19 -> 0.05,
    from 20 -> 0.1.
    """
    if it < n1:
        return _f32(m1)
    return _f32(m2) if it < n2 else _f32(m3)


def lr_alter(it, active_first=True, active_period=-1, inactive_period=-1):
    """1 for active_period iterations, 0 for inactive_period, repeating (0 first if not
    active_first).

    Example: active_period=2, inactive_period=1, base_lr=0.1: 0.1, 0.1, 0, 0.1, 0.1, 0, ...
    """
    _require(active_period >= 0 and inactive_period >= 0 and active_period + inactive_period > 0,
             "policy 'alter' needs active_period >= 0, inactive_period >= 0 and a positive sum, "
             "got %r and %r" % (active_period, inactive_period))
    first = active_period if active_first else inactive_period
    in_first_phase = it % (active_period + inactive_period) < first
    return float(in_first_phase == bool(active_first))


def lr_hill(it, num_iter=0, start_multiplier=0.0, gamma=0.0, power=0.0, end_multiplier=0.0):
    """Linear warmup for num_iter iterations, then inv decay, floored at end_multiplier.

    Example: num_iter=20, start_multiplier=0.1, gamma=1e-3, power=0.5, end_multiplier=0.05,
    base_lr=0.1: iteration 0 -> 0.01, 10 -> 0.055, 20 -> 0.1, 999 -> 0.0711.
    """
    if it < num_iter:
        return lr_linear_warmup(it, start_multiplier, num_iter)
    return max(_f32(end_multiplier), lr_inv(it - num_iter, gamma, power))


def lr_cyclical(it, base_lr, max_lr=0.005, stepsize=0, decay=1.0):
    """Triangular cycles between base_lr and max_lr, period 2 * stepsize, each cycle's peak
    scaled by decay ** cycle (https://arxiv.org/abs/1506.01186).

    Example: base_lr=0.001, max_lr=0.005, stepsize=10: iteration 0 -> 0.001, 5 -> 0.003,
    10 -> 0.005, 20 -> 0.001.
    """
    _require(stepsize > 0, "policy 'cyclical' needs stepsize > 0, got %r" % (stepsize,))
    completed = _trunc_div(it, 2 * stepsize)
    x = abs(_f32(_f32(_f32(it) / stepsize) - 2 * (completed + 1) + 1))
    ratio = _f32(_f32(abs(_f32(max_lr))) / _f32(abs(_f32(base_lr))) - 1)
    return _f32(1 + _f32(ratio * max(0.0, _f32(1 - x))) * _pow(_f32(decay), completed))


def lr_cosine(it, min_lr=0.1, max_lr=0.5, period=50, t_mult=1.0, lr_shrink=0.99):
    """Cosine annealing with warm restarts (SGDR, https://arxiv.org/abs/1608.03983):
    from max_lr down to min_lr over `period` iterations, each restart's period `t_mult` times
    longer and both bounds scaled by lr_shrink ** restart. Note: min_lr and max_lr are
    multipliers of base_lr here, as in Caffe2.

    Example: min_lr=0.001, max_lr=0.05, period=40, t_mult=2, lr_shrink=0.9, base_lr=0.1:
    iteration 0 -> 0.005, 20 -> 0.00255, 40 (restart) -> 0.0045.
    """
    _require(period > 0, "policy 'cosine' needs period > 0, got %r" % (period,))
    t_mult = _f32(t_mult)
    if t_mult != 1.0:
        restarts = math.floor(math.log(1 - it / period * (1.0 - t_mult)) / math.log(t_mult))
        t_i = _f32(_f32(_pow(t_mult, restarts)) * period)
        t_curr = _f32(it - (1.0 - _f32(_pow(t_mult, restarts))) / (1.0 - t_mult) * period)
    else:
        restarts = math.floor(it / period)
        t_i = _f32(period)
        t_curr = _f32(it - _f32(t_i * restarts))
    shrink = _f32(_pow(_f32(lr_shrink), restarts))
    low = _f32(_f32(min_lr) * shrink)
    high = _f32(_f32(max_lr) * shrink)
    return _f32(low + 0.5 * _f32(high - low) * (1 + math.cos(math.pi * t_curr / t_i)))


def lr_constant_then_linear_warmup(it, start_warmup_multiplier=0.1,
                                   constant_warmup_num_iter=10000000,
                                   linear_warmup_num_iter=10000000):
    """start_warmup_multiplier for constant_warmup_num_iter iterations, then a linear ramp to 1
    over linear_warmup_num_iter iterations, then 1.

    Example: 0.1, 10, 10, base_lr=0.1: 0-9 -> 0.01, 15 -> 0.055, from 20 -> 0.1.
    """
    if it < constant_warmup_num_iter:
        return lr_constant_warmup(it, start_warmup_multiplier, constant_warmup_num_iter)
    if it < constant_warmup_num_iter + linear_warmup_num_iter:
        return lr_linear_warmup(it - constant_warmup_num_iter, start_warmup_multiplier,
                                linear_warmup_num_iter)
    return 1.0


def lr_composite_cosine(it, start_warmup_multiplier=0.1, constant_warmup_num_iter=10000000,
                        linear_warmup_num_iter=10000000, cosine_max_lr=0.5, cosine_min_lr=0.1,
                        cosine_period=50, cosine_t_mult=1.0, cosine_lr_shrink=0.99):
    """constantThenLinearWarmup, then cosine counted from the end of the warmup.

    Example: 0.1, 0, 10, cosine_max_lr=1, cosine_min_lr=0.1, cosine_period=20, base_lr=0.1:
    0 -> 0.01, 10 -> 0.1, 20 -> 0.055.
    """
    warmup = constant_warmup_num_iter + linear_warmup_num_iter
    if it < warmup:
        return lr_constant_then_linear_warmup(it, start_warmup_multiplier,
                                              constant_warmup_num_iter, linear_warmup_num_iter)
    return lr_cosine(it - warmup, cosine_min_lr, cosine_max_lr, cosine_period, cosine_t_mult,
                     cosine_lr_shrink)


def lr_composite_cyclical(it, base_lr, start_warmup_multiplier=0.1,
                          constant_warmup_num_iter=10000000, linear_warmup_num_iter=10000000,
                          cyclical_max_lr=0.05, cyclical_step_size=1000000, cyclical_decay=1.0):
    """constantThenLinearWarmup, then cyclical counted from the end of the warmup.

    Example: base_lr=0.01, 0.1, 0, 10, cyclical_max_lr=0.05, cyclical_step_size=5:
    0 -> 0.001, 10 -> 0.01, 15 -> 0.05, 20 -> 0.01.
    """
    warmup = constant_warmup_num_iter + linear_warmup_num_iter
    if it < warmup:
        return lr_constant_then_linear_warmup(it, start_warmup_multiplier,
                                              constant_warmup_num_iter, linear_warmup_num_iter)
    return lr_cyclical(it - warmup, base_lr, cyclical_max_lr, cyclical_step_size, cyclical_decay)


def lr_composite(it, base_lr=None, sub_policy_num_iters=(), **sub_policy_args):
    """Sub-policies one after another: sub-policy i (args prefixed `sub_policy_<i>_`, e.g.
    sub_policy_0_policy="fixed", sub_policy_0_lr_scale=1) covers sub_policy_num_iters[i]
    iterations and is evaluated at the global iteration, times its lr_scale.

    Example: sub_policy_num_iters=[10, 100], sub_policy_0_policy="fixed",
    sub_policy_1_policy="step", sub_policy_1_stepsize=20, sub_policy_1_gamma=0.5, base_lr=0.1:
    iteration 5 -> 0.1, 30 -> 0.05 (step at the global iteration 30).
    Caffe2 starts the first sub-policy at iteration 1 (the iteration the optimizer's Iter op
    produces first); iteration 0 also uses it here.
    """
    return _Composite(sub_policy_num_iters, sub_policy_args, base_lr)(it)


# Caffe solver.prototxt policies (not in Caffe2).
def lr_multistep(it, gamma=0.0, stepvalue=()):
    """Caffe's multistep: gamma ** (number of stepvalue entries <= it). Not a Caffe2 policy.

    Example: stepvalue=[100, 200], gamma=0.1, base_lr=0.1: 0-99 -> 0.1, 100-199 -> 0.01,
    from 200 -> 0.001.
    """
    steps = list(stepvalue) if isinstance(stepvalue, (list, tuple)) else [stepvalue]
    _require(all(a < b for a, b in zip(steps, steps[1:])),
             "policy 'multistep' needs increasing stepvalue entries, got %r" % (steps,))
    return _f32(_pow(_f32(gamma), bisect.bisect_right(steps, it)))


def lr_sigmoid(it, gamma=0.0, stepsize=0):
    """Caffe's sigmoid: 1 / (1 + exp(-gamma * (it - stepsize))). Not a Caffe2 policy.

    Example: gamma=-0.1, stepsize=50, base_lr=0.1: iteration 0 -> 0.0993, 50 -> 0.05,
    100 -> 0.00067.
    """
    z = -_f32(gamma) * (it - stepsize)
    return _f32(0.0 if z > 700 else 1.0 / (1.0 + math.exp(z)))


LR_POLICIES = {
    "fixed": lr_fixed,
    "step": lr_step,
    "exp": lr_exp,
    "gate": lr_gate,
    "inv": lr_inv,
    "poly": lr_poly,
    "linearWarmup": lr_linear_warmup,
    "constantWarmup": lr_constant_warmup,
    "pieceWarmup": lr_piece_warmup,
    "alter": lr_alter,
    "hill": lr_hill,
    "cyclical": lr_cyclical,
    "cosine": lr_cosine,
    "constantThenLinearWarmup": lr_constant_then_linear_warmup,
    "compositeCosine": lr_composite_cosine,
    "compositeCyclical": lr_composite_cyclical,
    "composite": lr_composite,
    "multistep": lr_multistep,
    "sigmoid": lr_sigmoid,
}
CAFFE_ONLY_POLICIES = frozenset({"multistep", "sigmoid"})
# Policies whose rate is not meant to rise (check_schedule warns when it does).
DECAYING_POLICIES = frozenset({"fixed", "step", "exp", "inv", "poly", "multistep"})


def _parameters(fn):
    return [p for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)][1:]  # skip the iteration


def _policy_function(policy):
    try:
        return LR_POLICIES[policy]
    except (KeyError, TypeError):
        hint = closest(str(policy), LR_POLICIES)
        raise LRPolicyError("unknown learning rate policy %r%s; valid policies: %s" % (
            policy, " (did you mean %s?)" % " or ".join(map(repr, hint)) if hint else "",
            ", ".join(sorted(LR_POLICIES)))) from None


class LRSchedule:
    """A policy bound to base_lr and its arguments: `schedule(iteration) -> float32 rate`.

    Arguments the policy does not take are ignored, as Caffe2 ignores them (optimizer builders
    pass every keyword to the op); `ignored` lists them for diagnostics."""

    def __init__(self, policy, base_lr, policy_args):
        fn = _policy_function(policy)
        self.policy = policy
        self.base_lr = _f32(base_lr)
        if fn is lr_composite:
            self.ignored = []
            self._multiplier = _Composite(policy_args.get("sub_policy_num_iters", ()),
                                          policy_args, base_lr)
        else:
            names = [p.name for p in _parameters(fn)]
            bound = {k: v for k, v in policy_args.items() if k in names}
            if "base_lr" in names:
                bound["base_lr"] = base_lr
            self.ignored = sorted(k for k in policy_args if k not in names)
            self._fn, self._args = fn, bound
            self._multiplier = self._call
        self(0)  # bad arguments fail here, when the net is created, not mid-training

    def _call(self, it):
        return self._fn(it, **self._args)

    def multiplier(self, iteration):
        return self._multiplier(int(iteration))

    def __call__(self, iteration):
        return _f32(self.base_lr * self.multiplier(iteration))


class _Composite:
    """Caffe2's CompositeLearningRate: consecutive sub-schedules, by global iteration."""

    def __init__(self, num_iters, args, base_lr):
        num_iters = list(num_iters) if isinstance(num_iters, (list, tuple)) else [num_iters]
        _require(num_iters, "policy 'composite' needs sub_policy_num_iters (one entry per "
                            "sub-policy)")
        self.starts, self.parts = [], []
        start = 1
        for i, count in enumerate(num_iters):
            _require(count > 0, "composite: sub_policy_num_iters[%d] must be positive, got %r"
                     % (i, count))
            prefix = "sub_policy_%d_" % i
            policy = args.get(prefix + "policy", "")
            _require(policy != "composite", "composite: a composite sub-policy is not allowed")
            sub = {k[len(prefix):]: v for k, v in args.items() if k.startswith(prefix)}
            scale = _f32(sub.pop("lr_scale", 1.0))
            sub.pop("policy", None)
            fn = _policy_function(policy)
            names = {p.name for p in _parameters(fn)}
            bound = {k: v for k, v in sub.items() if k in names}
            if "base_lr" in names:  # cyclical sub-policies use the op's base_lr, as in Caffe2
                bound["base_lr"] = base_lr
            self.starts.append(start)
            self.parts.append((fn, bound, scale))
            start += count

    def __call__(self, it):
        index = max(bisect.bisect_right(self.starts, it) - 1, 0)
        fn, args, scale = self.parts[index]
        return _f32(fn(it, **args) * scale)


def learning_rate(policy, iteration, base_lr, /, **policy_args):
    """The rate Caffe2's LearningRate op outputs at `iteration`: base_lr * multiplier, float32.

    >>> learning_rate("step", 25, -0.1, stepsize=10, gamma=0.5)   # -0.1 * 0.5**2
    -0.02500000037252903
    """
    return LRSchedule(policy, base_lr, policy_args)(iteration)


_EXHAUSTIVE_LIMIT = 100000


def _sample_iterations(max_iter, schedule_args):
    if max_iter <= _EXHAUSTIVE_LIMIT:
        return list(range(max_iter + 1))
    stride = max_iter // 20000
    points = set(range(0, max_iter + 1, stride)) | {max_iter}
    for value in schedule_args.values():  # boundaries: step edges, warmup ends
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, int) and not isinstance(v, bool) and 0 < v <= max_iter:
                points.update((v - 1, v))
    return sorted(points)


def check_schedule(policy, base_lr, max_iter, /, **policy_args):
    """Warnings (strings) about a schedule run for `max_iter` iterations; [] when it looks sane.

    `max_iter` is the length of the run; a `max_iter=` keyword is poly's own argument:
    check_schedule("poly", 0.1, 5000, max_iter=4000, power=0.5) warns that the run outlives
    the schedule. Raises LRPolicyError for an unknown policy or unusable arguments.
    """
    schedule = LRSchedule(policy, base_lr, policy_args)
    warnings = []
    if schedule.ignored:
        warnings.append("policy %r does not use argument(s) %s; they are ignored"
                        % (policy, ", ".join(schedule.ignored)))
    if policy in CAFFE_ONLY_POLICIES:
        warnings.append("policy %r comes from Caffe's solver; real Caffe2's LearningRate op "
                        "rejects it" % policy)
    if policy == "poly":
        poly_max = policy_args.get("max_iter")
        power = policy_args.get("power", 0.0)
        if poly_max is None or poly_max < 0:
            warnings.append("poly without a positive max_iter: Caffe2 reads max_iter=-1 as "
                            "2**64-1, so the rate stays at base_lr; set max_iter to the run length")
        elif poly_max < max_iter:
            warnings.append("poly max_iter=%d is shorter than the run (%d iterations): past it "
                            "(1 - iter/max_iter) is negative, which gives NaN for a fractional "
                            "power and a rising rate for an even one" % (poly_max, max_iter))
        if 0 < power < 1:
            warnings.append("poly power=%g < 1: the rate falls slowly at first and then steeply "
                            "to 0 near max_iter (a concave curve; power=1 is linear)" % power)
        if power <= 0:
            warnings.append("poly power=%g: the rate does not decay (power must be > 0)" % power)
    if policy in ("step", "exp", "multistep", "inv") and "gamma" in policy_args:
        gamma = policy_args["gamma"]
        if policy != "inv" and gamma > 1:
            warnings.append("%s gamma=%g > 1 makes the rate grow" % (policy, gamma))
        if policy != "inv" and gamma <= 0:
            warnings.append("%s gamma=%g: the rate drops to 0 (or flips sign) after the first "
                            "step; gamma is a factor in (0, 1]" % (policy, gamma))
    if policy == "step" and policy_args.get("stepsize", 0) > max_iter:
        warnings.append("step stepsize=%d is longer than the run (%d iterations): the rate never "
                        "changes" % (policy_args["stepsize"], max_iter))
    peak = policy_args.get("max_lr", 0.5)
    if policy == "cosine" and max(peak, policy_args.get("min_lr", 0.1)) > 1:
        warnings.append("cosine min_lr/max_lr multiply base_lr in Caffe2 (they are not absolute "
                        "rates): max_lr=%g makes the peak %g" % (peak, base_lr * peak))
    warmup = policy_args.get("num_iter") if policy in ("linearWarmup", "constantWarmup",
                                                        "hill") else None
    if warmup is not None and warmup > max_iter:
        warnings.append("%s num_iter=%d is longer than the run (%d iterations): the warmup never "
                        "finishes" % (policy, warmup, max_iter))

    rates = [(it, schedule(it)) for it in _sample_iterations(max_iter, policy_args)]
    bad = next(((it, r) for it, r in rates if not math.isfinite(r)), None)
    if bad:
        warnings.append("the rate is %r at iteration %d" % (bad[1], bad[0]))
    if base_lr != 0:
        flipped = next((it for it, r in rates if r * base_lr < 0), None)
        if flipped is not None:
            warnings.append("the rate changes sign at iteration %d (base_lr=%g, rate=%g)"
                            % (flipped, base_lr, schedule(flipped)))
        # poly reaching 0 exactly at its last iteration is the schedule's design
        zero = next((it for it, r in rates if r == 0 and it < max_iter), None)
        if zero is not None and policy not in ("alter", "gate", "pieceWarmup"):
            warnings.append("the rate reaches 0 at iteration %d: training stops learning there"
                            % zero)
    finite = [(it, abs(r)) for it, r in rates if math.isfinite(r)]
    if policy in DECAYING_POLICIES:
        rise = next((b for a, b in zip(finite, finite[1:]) if b[1] > a[1] * (1 + 1e-6)), None)
        if rise is not None:
            warnings.append("the rate grows at iteration %d (policy %r should only decay)"
                            % (rise[0], policy))
    elif (finite and finite[-1][1] > abs(_f32(base_lr)) * (1 + 1e-6)
          and policy not in ("cyclical", "compositeCyclical")):
        warnings.append("the rate ends above |base_lr| (%g > %g at iteration %d)"
                        % (finite[-1][1], abs(base_lr), finite[-1][0]))
    return warnings


# --------------------------------------------------------------------------------------
# Operators
# --------------------------------------------------------------------------------------
class Mutex:
    """The blob CreateMutex makes (a std::mutex in Caffe2). Pickles as an empty marker, as
    Caffe2's MutexSerializer stores it, so a checkpoint of every blob still works."""

    def __init__(self):
        self._lock = threading.Lock()

    def __enter__(self):
        self._lock.acquire()
        return self

    def __exit__(self, *exc):
        self._lock.release()

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self._lock = threading.Lock()

    def __repr__(self):
        return "<caffe2 mutex>"


def _next_iteration(counter, name):
    enforce(isinstance(counter, torch.Tensor) and counter.dtype == torch.int64
            and counter.numel() == 1,
            "the iteration counter %r must be an int64 tensor with one element (ConstantFill "
            "shape=[1], dtype=INT64), got %s" % (name, _describe(counter)))
    if counter.device.type == "cpu":
        enforce(int(counter.reshape(-1)[0]) >= 0,
                "the iteration counter %r is negative (%d)" % (name, int(counter.reshape(-1)[0])))
    return counter + 1


def _describe(value):
    if isinstance(value, torch.Tensor):
        return "%s tensor of shape %s" % (str(value.dtype).replace("torch.", ""), list(value.shape))
    return type(value).__name__


@operator("Iter", grad_inputs=(), context=True)
def iter_op(ITER=None, *, ctx):
    """ITER + 1 (written back in place). Without an input, Caffe2's deprecated form: the output
    blob is incremented if it exists, else it starts at 0 and becomes 1."""
    name = ctx.op.output[0]
    if ITER is None:
        ITER = ctx.workspace.blobs.get(name)
        if ITER is None:
            log.warning("Iter without an input is deprecated in Caffe2; write Iter([%s], [%s]) "
                        "with %s filled as int64 0", name, name, name)
            ITER = torch.zeros(1, dtype=torch.int64)
    return _next_iteration(ITER, name)


@operator("AtomicIter", grad_inputs=(), context=True)
def atomic_iter(mutex, ITER, *, ctx):
    """Iter under `mutex` (from CreateMutex)."""
    enforce(isinstance(mutex, Mutex), "AtomicIter: input 0 (%r) must be a mutex made by "
            "CreateMutex, got %s" % (ctx.op.input[0], _describe(mutex)))
    with mutex:
        return _next_iteration(ITER, ctx.op.input[1])


@operator("CreateMutex", grad_inputs=())
def create_mutex():
    return Mutex()


def _bind_schedule(kwargs):
    """prepare hook: validate the policy and bind its arguments once, at CreateNet."""
    base_lr, policy = kwargs.pop("base_lr"), kwargs.pop("policy")
    kwargs.pop("schedule", None)
    enforce(base_lr is not None, "LearningRate: the 'base_lr' argument must be set")
    enforce(policy, "LearningRate: the 'policy' argument must be set (one of %s)"
            % ", ".join(sorted(LR_POLICIES)))
    given = {k: v for k, v in kwargs.items() if v is not None}
    if policy == "composite":
        return {"schedule": _CompositeFromOp(base_lr)}
    return {"schedule": LRSchedule(policy, base_lr, given)}


class _CompositeFromOp:
    """composite's sub_policy_<i>_* arguments have open-ended names the op cannot declare, so
    its schedule is bound from the OperatorDef on the first run and kept."""

    def __init__(self, base_lr):
        self.base_lr, self.schedule = base_lr, None

    def resolve(self, op_def):
        if self.schedule is None:
            args = {k: v for k, v in ArgsToDict(op_def.arg).items() if k not in ("base_lr", "policy")}
            self.schedule = LRSchedule("composite", self.base_lr, args)
        return self.schedule


def scale_base_lr(netdef, factor):
    """Multiply the base_lr of every LearningRate op of `netdef` by `factor`, in place (the
    rollback of the divergence guard, the distributed lr scaling rule).
    Returns [(op index, old base_lr, new base_lr)]."""
    changed = []
    for index, op in enumerate(netdef.op):
        old = ArgsToDict(op.arg).get("base_lr") if op.type == "LearningRate" else None
        if old is not None:
            set_arg(op, "base_lr", float(old) * factor)
            changed.append((index, float(old), float(old) * factor))
    return changed


def learning_rate_op(ITER, *, schedule=None, ctx):
    """LR = base_lr * policy(ITER[0]): a float32 [1] tensor on the op's device."""
    enforce(isinstance(ITER, torch.Tensor) and ITER.numel() == 1
            and not ITER.is_floating_point(),
            "LearningRate: input %r must be the int64 iteration counter (one element), got %s"
            % (ctx.op.input[0], _describe(ITER)))
    if isinstance(schedule, _CompositeFromOp):
        schedule = schedule.resolve(ctx.op)
    rate = schedule(int(ITER.reshape(-1)[0]))
    return torch.full((1,), rate, dtype=torch.float32, device=ctx.device)


def _learning_rate_signature():
    """Advertise every argument any policy takes, so the registry hands them to the prepare
    hook; adding a policy to LR_POLICIES is all it takes for the op to accept its arguments."""
    names = {}
    for fn in LR_POLICIES.values():
        for p in _parameters(fn):
            if p.kind != p.VAR_KEYWORD and p.name != "base_lr":
                names[p.name] = None
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("ITER", inspect.Parameter.POSITIONAL_OR_KEYWORD),
              inspect.Parameter("base_lr", kw, default=None),
              inspect.Parameter("policy", kw, default="")]
    params += [inspect.Parameter(n, kw, default=None) for n in sorted(names)]
    params += [inspect.Parameter("schedule", kw, default=None), inspect.Parameter("ctx", kw)]
    return inspect.Signature(params)


learning_rate_op.__signature__ = _learning_rate_signature()
operator("LearningRate", grad_inputs=(), context=True, prepare=_bind_schedule)(learning_rate_op)
