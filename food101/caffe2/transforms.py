"""Caffe2's net transforms (workspace.ApplyTransform / ApplyTransformIfFaster), by name.

A transform takes a NetDef and returns a new one; the input is never modified:

    @transform("ConvToNNPack")
    def conv_to_nnpack(netdef): ...

Only the transforms registered here exist; an unknown name is an error naming the known ones.
"""
from food101.caffe2.errors import Caffe2Error, closest
from food101.caffe2.proto import caffe2_pb2

_TRANSFORMS = {}


def transform(name):
    def register(fn):
        if name in _TRANSFORMS:
            raise ValueError("transform %r registered twice" % name)
        _TRANSFORMS[name] = fn
        return fn
    return register


def apply_transform(name, netdef):
    """The NetDef `netdef` transformed by the transform registered as `name`."""
    try:
        fn = _TRANSFORMS[name]
    except KeyError:
        hint = closest(name, _TRANSFORMS)
        raise Caffe2Error("no transform named %r (registered: %s)%s" % (
            name, ", ".join(sorted(_TRANSFORMS)),
            "; did you mean " + " or ".join(map(repr, hint)) if hint else "")) from None
    copy = caffe2_pb2.NetDef()
    copy.CopyFrom(netdef)
    return fn(copy)


@transform("ConvToNNPack")
def conv_to_nnpack(netdef):
    """Every CPU Conv op runs with engine NNPACK (here: the same torch kernel, renamed)."""
    for op in netdef.op:
        if op.type == "Conv" and op.device_option.device_type == caffe2_pb2.CPU:
            op.engine = "NNPACK"
    return netdef
