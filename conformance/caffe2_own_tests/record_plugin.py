"""pytest plugin for the conformance runs (loaded with -p; Python 3.7 and 3.11).

Writes one JSON line per test to $CONFORMANCE_RESULTS (outcome over setup/call/teardown) so a
file that dies or times out still leaves the results of the tests that ran; bounds each test by
$CONFORMANCE_TEST_TIMEOUT seconds (SIGALRM). Hypothesis deadlines are switched off in every
profile the tests register: timing on a shared machine is not what Caffe2's tests assert.
"""
import json
import os
import signal

import hypothesis

_register_profile = hypothesis.settings.register_profile


def _register_without_deadline(name, parent=None, **kwargs):
    if parent is not None:
        parent = hypothesis.settings(parent, deadline=None)
    kwargs["deadline"] = None
    return _register_profile(name, parent, **kwargs)


# the settings class forbids attribute assignment through its metaclass; type's own setter
# is the documented way around a metaclass __setattr__
type.__setattr__(hypothesis.settings, "register_profile", staticmethod(_register_without_deadline))

_outcomes = {}
_messages = {}
_TIMEOUT = int(os.environ.get("CONFORMANCE_TEST_TIMEOUT", "120"))


class TestTimeout(BaseException):
    """A BaseException, as KeyboardInterrupt: hypothesis takes an Exception for a failing example
    and goes on shrinking and replaying it with the alarm spent, so a slow failing test ran on
    unbounded; this one propagates out of hypothesis and pytest records the test as failed."""


def _alarm(signum, frame):
    raise TestTimeout("test ran longer than %d s" % _TIMEOUT)


def pytest_runtest_setup(item):
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(_TIMEOUT)


def pytest_runtest_teardown(item):
    signal.alarm(0)


def pytest_runtest_logreport(report):
    previous = _outcomes.get(report.nodeid)
    if report.failed:
        outcome = "failed"
        crash = getattr(report.longrepr, "reprcrash", None)
        _messages.setdefault(report.nodeid, str(crash if crash is not None else report.longrepr)[-400:])
    elif report.skipped:
        outcome = "skipped"
    elif report.when == "call":
        outcome = "passed"
    else:
        outcome = previous
    if previous in ("failed", "skipped") and outcome == "passed":
        outcome = previous
    _outcomes[report.nodeid] = outcome
    if report.when == "teardown":
        path = os.environ.get("CONFORMANCE_RESULTS")
        if path:
            message = _messages.get(report.nodeid, "")
            with open(path, "a") as f:
                f.write(json.dumps({"test": report.nodeid.split("::", 1)[-1],
                                    "outcome": _outcomes[report.nodeid],
                                    "message": message}) + "\n")
