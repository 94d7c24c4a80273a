"""The learning-rate schedule a run trains with, from its config, and a report of any schedule.

The rates come from `food101.caffe2.ops.learning_rate.learning_rate`, the function behind the
`LearningRate` op, so what is printed here is what the training net computes. Caffe2's
`build_sgd` increments the iteration counter before the `LearningRate` op, so update number i
(1-based, the `Iteration i` of the log) uses the rate at i; a Caffe solver run
(solver.lr_numbering "caffe") uses the rate at i - 1, as Caffe's SGDSolver does
(config.lr_iteration):

    >>> rates(solver)[1]   # rate of the first update
"""
import math

from food101.caffe2.ops.learning_rate import LR_POLICIES, LRSchedule, check_schedule, learning_rate
from food101.train.config import lr_iteration, lr_policy_args


def schedule_for(solver):
    """(policy, base_lr, policy_args) of a SolverConfig."""
    return solver.lr_policy, solver.base_lr, lr_policy_args(solver)


def rate_at(solver, update):
    """The rate weight update `update` (1-based) trains with."""
    policy, base_lr, args = schedule_for(solver)
    return learning_rate(policy, lr_iteration(solver, update), base_lr, **args)


def rates(solver, updates=None):
    """{update: rate} for `updates` (default: every update 1..max_iter)."""
    policy, base_lr, args = schedule_for(solver)
    schedule = LRSchedule(policy, base_lr, args)
    its = range(1, solver.max_iter + 1) if updates is None else updates
    return {int(i): schedule(lr_iteration(solver, int(i))) for i in its}


def check(solver):
    policy, base_lr, args = schedule_for(solver)
    return check_schedule(policy, base_lr, solver.max_iter, **args)


def report(policy, base_lr, max_iter, policy_args, points=20, plot_path=None, title=None,
           offset=0):
    """Rates of a schedule over `max_iter` updates, its warnings and (optionally) a plot.

    Returns {"rows": [(update, rate)], "warnings": [...], "plot": path or None}; the rows are
    `points` evenly spaced updates plus every update where a piecewise-constant rate changes
    (at most 50 of those). Update i uses the policy at i + offset (-1: Caffe's numbering)."""
    base_schedule = LRSchedule(policy, base_lr, policy_args)

    def schedule(update):
        return base_schedule(update + offset)

    step = max(1, max_iter // 100000)
    its = list(range(1, max_iter + 1, step))
    if its[-1] != max_iter:
        its.append(max_iter)
    values = [schedule(i) for i in its]
    shown = {1, max_iter}
    if points > 1:
        shown.update(1 + round(k * (max_iter - 1) / (points - 1)) for k in range(points))
    changes = [its[k] for k in range(1, len(its))
               if values[k] != values[k - 1] and not (math.isnan(values[k]) and math.isnan(values[k - 1]))]
    if len(changes) <= min(50, len(its) // 4):  # piecewise constant: show each step
        shown.update(changes)
    rows = [(i, schedule(i)) for i in sorted(shown)]
    warnings = check_schedule(policy, base_lr, max_iter, **policy_args)
    plot = None
    if plot_path:
        from food101.train.plots import plot_lr
        plot = plot_lr((its, values), plot_path, title=title or "lr policy %r" % policy)
    return {"rows": rows, "warnings": warnings, "plot": plot}


NUMBERING_NOTES = {0: "update i uses the policy at iteration i (Caffe2's build_sgd)",
                   -1: "update i uses the policy at iteration i - 1 (Caffe's SGDSolver)"}


def format_report(policy, base_lr, max_iter, policy_args, result, offset=0):
    args = ", ".join("%s=%s" % kv for kv in sorted(policy_args.items()))
    lines = ["lr_policy %s, base_lr %g%s, %d iterations; %s" % (
                 policy, base_lr, ", " + args if args else "", max_iter, NUMBERING_NOTES[offset]),
             "%10s  %s" % ("iteration", "lr")]
    lines += ["%10d  %.6g" % (i, r) if math.isfinite(r) else "%10d  %r  <-- not finite" % (i, r)
              for i, r in result["rows"]]
    for w in result["warnings"]:
        lines.append("WARNING: " + w)
    if not result["warnings"]:
        lines.append("no problems found")
    if result["plot"]:
        lines.append("plot: %s" % result["plot"])
    return lines


POLICIES = sorted(LR_POLICIES)


def parse_policy_args(items):
    """["gamma=0.5", "stepvalue=[10,20]"] -> {"gamma": 0.5, "stepvalue": [10, 20]} (YAML values)."""
    import yaml
    out = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError("--arg %r: expected NAME=VALUE (for example gamma=0.5)" % item)
        key, text = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(text)
    return out


def schedule_report(config=None, solver=None, overrides=None, policy=None, base_lr=None,
                    max_iter=None, policy_args=None, points=20, plot_path=None):
    """What tools/lr_schedule.py prints: the schedule of a config (YAML / solver.prototxt /
    overrides), or of any LearningRate policy given by name with its arguments.

    Returns (lines, warnings)."""
    from food101.train.config import load_config, merge
    cfg = load_config(config, solver, overrides)
    if max_iter is not None:     # the run length is the policy's too (poly's max_iter)
        cfg = merge(cfg, {"solver.max_iter": int(max_iter)}, "--max-iter")
    if policy is None:
        policy, cfg_base_lr, args = schedule_for(cfg.solver)
        args.update(policy_args or {})
    else:
        cfg_base_lr, args = cfg.solver.base_lr, dict(policy_args or {})
        if policy == "poly" and max_iter is not None:
            args.setdefault("max_iter", int(max_iter))
    base_lr = cfg_base_lr if base_lr is None else base_lr
    max_iter = cfg.solver.max_iter if max_iter is None else max_iter
    if max_iter < 1:
        raise ValueError("max_iter must be >= 1, got %d" % max_iter)
    offset = lr_iteration(cfg.solver, 1) - 1  # a solver.prototxt: Caffe's numbering
    result = report(policy, base_lr, max_iter, args, points=points, plot_path=plot_path,
                    offset=offset)
    return format_report(policy, base_lr, max_iter, args, result, offset), result["warnings"]
