"""Errors raised by the Caffe2 runtime.

Every failure a user can cause (a bad NetDef, a missing blob, a wrong shape) surfaces as one of
these with the op, net, blob and expectation named, never as a bare traceback from inside torch.
"""
import difflib


class Caffe2Error(RuntimeError):
    """Base class of every error the runtime raises on purpose."""


class UnknownOperatorError(Caffe2Error):
    pass


class MissingBlobError(Caffe2Error, KeyError):
    def __str__(self):  # KeyError would repr() the message
        return self.args[0] if self.args else ""


class OperatorError(Caffe2Error):
    """An op failed while running: shape/dtype mismatch or a failed check inside the op."""


class ProtobufParseError(Caffe2Error):
    pass


def closest(name, candidates, n=3):
    """The few names nearest to `name`, for 'did you mean' hints."""
    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)


def enforce(condition, message, *args):
    """CAFFE_ENFORCE: ops check their preconditions with this; the executor adds the op context.

    With `args`, the message is `message % args`, formatted only when the check fails: checks
    on the hot path cost a comparison, not a string."""
    if not condition:
        raise OperatorError(message % args if args else message)
