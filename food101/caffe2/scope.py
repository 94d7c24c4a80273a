"""Name and device scopes for net building (caffe2.python.scope).

Two pieces of thread-local state that every op created through `core` consults:

    with core.NameScope("fire2"):          # blob names get the prefix "fire2/"
        with core.DeviceScope(core.DeviceOption(caffe2_pb2.CUDA, 0)):
            net.Relu("x", "y")             # -> input fire2/x, output fire2/y, on CUDA:0

Name scopes nest by concatenation ("a/b/"); device scopes replace the device but inherit the
outer scope's node_name and extra_info, as Caffe2 does.
"""
import contextlib
import threading

from food101.caffe2.proto import caffe2_pb2

_NAMESCOPE_SEPARATOR = "/"

_state = threading.local()


def CurrentNameScope():
    """The prefix blob names get now: "" or "a/b/" (always ending in the separator)."""
    return getattr(_state, "namescope", "")


def CurrentDeviceScope():
    """The DeviceOption ops get now, or None (then ops carry no device_option)."""
    return getattr(_state, "devicescope", None)


@contextlib.contextmanager
def NameScope(prefix, reset=False):
    """Prefix blob names with `prefix/` (nested inside the current scope unless `reset`)."""
    if prefix is not None and not isinstance(prefix, str):
        raise TypeError("NameScope takes a string, got %r" % (prefix,))
    old = CurrentNameScope()
    added = prefix + _NAMESCOPE_SEPARATOR if prefix else ""
    _state.namescope = added if reset else old + added
    try:
        yield
    finally:
        _state.namescope = old


@contextlib.contextmanager
def DeviceScope(scope, node_name=None):
    """Create ops on the device `scope` (a caffe2_pb2.DeviceOption)."""
    new = caffe2_pb2.DeviceOption()
    if scope:  # None or 0 with a node_name: only the node, as in Caffe2
        if not isinstance(scope, caffe2_pb2.DeviceOption):
            raise TypeError("DeviceScope takes a caffe2_pb2.DeviceOption, got %r" % (scope,))
        new.CopyFrom(scope)
    elif not node_name:
        raise ValueError("DeviceScope needs a DeviceOption or a node_name")
    if node_name:
        new.node_name = node_name
    old = CurrentDeviceScope()
    if old is not None:
        # a nested scope keeps the outer node name unless it names its own
        if old.HasField("node_name") and not new.HasField("node_name"):
            new.node_name = old.node_name
        if len(old.extra_info):
            merged = sorted(list(new.extra_info) + list(old.extra_info))
            del new.extra_info[:]
            new.extra_info.extend(merged)
    _state.devicescope = new
    try:
        yield
    finally:
        _state.devicescope = old
