"""caffe2.python.predictor.mobile_exporter: a net + its parameters as (init_net, predict_net).

    init_net, predict_net = mobile_exporter.Export(workspace, deploy_model.net, deploy_model.params)
    open("init_net.pb", "wb").write(init_net.SerializeToString())
    open("predict_net.pb", "wb").write(predict_net.SerializeToString())

init_net holds one GivenTensor*Fill per parameter (the Model Zoo format, read by
`workspace.Predictor`, `zoo.load` and real Caffe2); predict_net lists the net's inputs first
in `external_input` and the blobs nothing reads again in `external_output`.

One deliberate difference from Caffe2: the running statistics of SpatialBN (inputs 3 and 4,
`<bn>_rm` and `<bn>_riv`) are exported with their values even when `params` does not list them.
`model.params` never lists them (they are computed parameters), and Caffe2 replaced them with
a [1, 1] zero placeholder, so a re-loaded model normalised with garbage statistics.
"""
import numpy as np

from food101.caffe2 import core
from food101.caffe2.proto import caffe2_pb2

_FILL_OF_DTYPE = {
    np.dtype("float32"): "GivenTensorFill",
    np.dtype("int32"): "GivenTensorIntFill",
    np.dtype("int64"): "GivenTensorInt64Fill",
    np.dtype("uint8"): "GivenTensorByteStringToUInt8Fill",
    np.dtype("O"): "GivenTensorStringFill",
}
_RUNNING_STAT_INPUTS = {"SpatialBN": (3, 4)}


def add_tensor(net, name, blob):
    """Append to `net` (a NetDef) the fill op that recreates the numpy array `blob`."""
    blob = np.asarray(blob)
    if blob.dtype not in _FILL_OF_DTYPE:
        raise TypeError("mobile_exporter: blob %r has dtype %s; exportable dtypes: %s"
                        % (name, blob.dtype, ", ".join(str(d) for d in _FILL_OF_DTYPE)))
    values = blob
    if blob.dtype == np.dtype("uint8"):
        values = [blob.tobytes()]   # one byte string, as Caffe2 stores uint8 tensors
    if blob.dtype == np.dtype("O"):
        for value in blob.reshape(-1):
            if not isinstance(value, (bytes, str)):
                raise TypeError("mobile_exporter: string blob %r holds a %s, not bytes"
                                % (name, type(value).__name__))
    op = core.CreateOperator(_FILL_OF_DTYPE[blob.dtype], [], [name],
                             arg=[core.MakeArgument("shape", list(blob.shape)),
                                  core.MakeArgument("values", values)])
    op.ClearField("device_option")
    net.op.extend([op])


def _blob_versions(proto):
    """core.get_ssa's final versions: 0 for blobs only read, n for blobs written n times."""
    versions = {str(i): 0 for i in proto.external_input}
    for op in proto.op:
        if not proto.external_input:
            for name in op.input:
                versions.setdefault(name, 0)
        for name in op.output:
            versions[name] = versions.get(name, 0) + 1
    return versions


def _running_stats(proto):
    names = []
    for op in proto.op:
        for position in _RUNNING_STAT_INPUTS.get(op.type, ()):
            if position < len(op.input) and op.input[position] not in names:
                names.append(op.input[position])
    return names


def Export(workspace, net, params):
    """Returns init_net and predict_net suitable for writing to disk and loading into a
    Predictor. `workspace` is the module (its FetchBlob gives the parameter values)."""
    proto = net if isinstance(net, caffe2_pb2.NetDef) else net.Proto()
    predict_net = caffe2_pb2.NetDef()
    predict_net.CopyFrom(proto)
    init_net = caffe2_pb2.NetDef()
    params = [str(p) for p in params]
    params += [b for b in _running_stats(proto) if b not in params and workspace.HasBlob(b)]
    versions = _blob_versions(proto)
    read = {name for op in proto.op for name in op.input}
    input_blobs = [b for b, v in versions.items() if v == 0 and b not in params]
    output_blobs = [b for b, v in versions.items() if v != 0 and b not in read]
    for name in params:
        add_tensor(init_net, name, workspace.FetchBlob(name))
    for name in input_blobs:   # placeholders: the caller feeds the real inputs
        op = core.CreateOperator("GivenTensorFill", [], [name],
                                 arg=[core.MakeArgument("shape", [1, 1]),
                                      core.MakeArgument("values", [0.0])])
        op.ClearField("device_option")
        init_net.op.extend([op])
    del predict_net.external_input[:]
    external_inputs = list(input_blobs)
    external_inputs += [b for b in proto.external_input if b not in external_inputs]
    predict_net.external_input.extend(external_inputs)
    del predict_net.external_output[:]
    predict_net.external_output.extend(output_blobs)
    return init_net, predict_net
