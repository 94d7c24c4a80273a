"""tools/lr_schedule.py: prints and plots a schedule with the shared learning_rate function and
flags bad schedules."""
import os
import subprocess
import sys

import pytest

from food101.caffe2.ops.learning_rate import learning_rate
from tests.support import REPO

ROOT = REPO
TOOL = os.path.join(ROOT, "tools", "lr_schedule.py")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import lr_schedule  # noqa: E402


def run_tool(capsys, *argv):
    code = lr_schedule.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def rows(out):
    table = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            table[int(parts[0])] = float(parts[1])
    return table


def test_config_schedule_matches_learning_rate(capsys, tmp_path):
    plot = str(tmp_path / "lr.png")
    code, out, _ = run_tool(capsys, "--set", "solver.lr_policy=step", "--set", "solver.stepsize=30",
                            "--set", "solver.gamma=0.5", "--set", "solver.base_lr=0.2",
                            "--set", "solver.max_iter=100", "--plot", plot)
    assert code == 0
    table = rows(out)
    assert {1, 30, 60, 90, 100} <= set(table)  # every step edge is shown
    for it, value in table.items():
        assert value == pytest.approx(learning_rate("step", it, 0.2, stepsize=30, gamma=0.5), rel=1e-5)
    assert "no problems found" in out
    assert os.path.getsize(plot) > 1000


def test_solver_prototxt_multistep(capsys, tmp_path):
    solver = tmp_path / "solver.prototxt"
    solver.write_text('base_lr: 0.1\nlr_policy: "multistep"\nstepvalue: 10\nstepvalue: 20\n'
                      "gamma: 0.1\nmax_iter: 30\n")
    code, out, _ = run_tool(capsys, "--solver", str(solver))
    assert code == 0
    table = rows(out)
    # Caffe's numbering: update k uses iter_ k - 1, so stepvalue 10 takes effect at update 11
    assert table[10] == pytest.approx(0.1) and table[11] == pytest.approx(0.01)
    assert table[21] == pytest.approx(0.001, rel=1e-5)


def test_any_caffe2_policy_by_name(capsys):
    code, out, _ = run_tool(capsys, "--policy", "cosine", "--base-lr", "0.1", "--max-iter", "80",
                            "--arg", "min_lr=0.01", "--arg", "max_lr=1", "--arg", "period=40")
    assert code == 0
    table = rows(out)
    for it, value in table.items():
        assert value == pytest.approx(learning_rate("cosine", it, 0.1, min_lr=0.01, max_lr=1.0,
                                                    period=40), rel=1e-5)


@pytest.mark.parametrize("argv, flagged", [
    (["--policy", "poly", "--arg", "power=0.5", "--arg", "max_iter=50", "--max-iter", "80"],
     "not finite"),                                                        # NaN past max_iter
    (["--policy", "step", "--arg", "stepsize=10", "--arg", "gamma=1.5", "--max-iter", "40"],
     "grows"),                                                             # growing
    (["--policy", "step", "--arg", "stepsize=10", "--arg", "gamma=-0.5", "--max-iter", "40"],
     "changes sign"),                                                      # negative
])
def test_bad_schedules_are_flagged(capsys, argv, flagged):
    code, out, _ = run_tool(capsys, *argv, "--base-lr", "0.1")
    assert code == 0 and "WARNING" in out and flagged in out
    code, _, _ = run_tool(capsys, *argv, "--base-lr", "0.1", "--strict")
    assert code == 1


def test_errors_exit_2(capsys):
    code, _, err = run_tool(capsys, "--set", "solver.lr_policy=stepp")
    assert code == 2 and "did you mean step" in err


def test_runs_as_a_script():
    result = subprocess.run([sys.executable, TOOL, "--set", "solver.max_iter=10", "--points", "3"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "lr_policy step" in result.stdout
