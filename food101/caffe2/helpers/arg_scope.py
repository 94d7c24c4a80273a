"""brew.arg_scope: default keyword arguments for chosen helpers within a `with` block.

    with brew.arg_scope([brew.conv, brew.fc], WeightInitializer=PseudoFP16Initializer):
        brew.conv(model, ...)      # gets WeightInitializer unless the call gives its own
"""
import contextlib
import copy
import threading

_state = threading.local()


def get_current_scope():
    """{helper name: {kwarg: default}} of the enclosing arg_scope blocks."""
    if not hasattr(_state, "current_scope"):
        _state.current_scope = {}
    return _state.current_scope


@contextlib.contextmanager
def arg_scope(single_helper_or_list, **kwargs):
    helpers = single_helper_or_list if isinstance(single_helper_or_list, list) \
        else [single_helper_or_list]
    for helper in helpers:
        if not callable(helper):
            raise TypeError("arg_scope takes helper functions (e.g. brew.conv), got %r" % (helper,))
    old_scope = copy.deepcopy(get_current_scope())
    current = get_current_scope()
    for helper in helpers:
        current.setdefault(helper.__name__, {}).update(kwargs)
    try:
        yield
    finally:
        _state.current_scope = old_scope
