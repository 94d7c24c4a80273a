"""A Caffe2 Model Zoo model: the two NetDefs, the input it expects and the parameters it holds.

A Model Zoo folder holds

    init_net.pb        NetDef of GivenTensorFill ops, one per parameter blob
    predict_net.pb     NetDef of the inference graph (or predict_net.pbtxt, text format)
    value_info.json    {"<input blob>": [<TensorProto data type>, [N, C, H, W]]}

`load(folder)` reads and cross-checks them and returns a `ZooModel`; `print(model)` shows a layer
table (blob, op, output shape, params) computed by running the predict net once on zeros in a
private workspace, so the user's workspace is never touched.
"""
import json
import os
from collections import OrderedDict

import numpy as np
import torch

from food101.caffe2.errors import Caffe2Error, ProtobufParseError
from food101.caffe2.proto import caffe2_pb2, load_net, save_net
from food101.caffe2.utils import GIVEN_FILLS, external_reads, given_fill_value
from food101.zoo import _nets

INIT_NET = "init_net.pb"
PREDICT_NETS = ("predict_net.pb", "predict_net.pbtxt")
VALUE_INFO = "value_info.json"
LABELS = "labels.txt"

# TensorProto data types a zoo input may declare -> numpy dtype.
_INPUT_DTYPES = {1: np.float32, 2: np.int32, 3: np.uint8, 6: np.uint8, 10: np.int64, 12: np.float16,
                 13: np.float64}


class ZooError(Caffe2Error):
    """A Model Zoo folder or model that cannot be used as it is; the message says why."""


class ZooFileMissingError(ZooError, FileNotFoundError):
    pass


class MissingParameterError(ZooError):
    """The init net does not create a blob the predict net reads."""


class ZooModel:
    """Both NetDefs of a zoo model plus what a caller needs to feed and read it.

    Attributes:
        init_net, predict_net   caffe2_pb2.NetDef
        input_name, input_shape, input_dtype   from value_info.json
        output_name             the predict net's (last) external output, e.g. "softmaxout"
        param_shapes            OrderedDict {blob: shape} of every blob the init net creates
                                (except a placeholder for the input)
        class_names             list of class names, or None
        folder                  where it was loaded from (None for a model built in memory)
        is_standin              True for seeded stand-in weights (see locate_squeezenet)
    """

    def __init__(self, init_net, predict_net, input_name, input_shape, input_dtype=np.float32,
                 output_name=None, class_names=None, folder=None, is_standin=False):
        self.init_net = init_net
        self.predict_net = predict_net
        self.input_name = input_name
        self.input_shape = tuple(int(d) for d in input_shape)
        self.input_dtype = np.dtype(input_dtype)
        self.output_name = output_name or _default_output(predict_net)
        self.class_names = list(class_names) if class_names is not None else None
        self.folder = folder
        self.is_standin = is_standin
        self._shapes = None
        # some zoo init nets also fill a placeholder for the input: that is not a parameter
        self.param_shapes = OrderedDict((k, v) for k, v in _param_shapes(init_net) if k != input_name)
        check_complete(self)

    # ------------------------------------------------------------------ description
    @property
    def name(self):
        return self.predict_net.name or "model"

    @property
    def params(self):
        """Names of the blobs the init net creates (the model's parameters), in init order."""
        return list(self.param_shapes)

    @property
    def num_params(self):
        return int(sum(int(np.prod(s, dtype=np.int64)) for s in self.param_shapes.values()))

    @property
    def num_classes(self):
        clf = find_classifier(self.predict_net)
        return int(self.param_shapes[clf.weight][0])

    def blob_shapes(self, batch_size=1):
        """{blob: shape} of every blob the predict net writes, on a zero input of batch_size."""
        if self._shapes is None or self._shapes[0] != batch_size:
            self._shapes = (batch_size, infer_shapes(self, batch_size))
        return self._shapes[1]

    def layer_table(self, batch_size=1):
        """Rows (blob, op type, output shape, number of parameters), one per predict-net op."""
        shapes = self.blob_shapes(batch_size)
        rows = []
        for op in self.predict_net.op:
            if not op.output:
                continue
            count = sum(int(np.prod(self.param_shapes[i], dtype=np.int64))
                        for i in op.input if i in self.param_shapes)
            rows.append((op.output[0], op.type, tuple(shapes.get(op.output[0], ())), count))
        return rows

    def summary(self, batch_size=1):
        rows = [(b, t, "x".join(str(d) for d in s), "{:,}".format(n) if n else "")
                for b, t, s, n in self.layer_table(batch_size)]
        head = ("blob", "op", "output shape", "params")
        widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(4)]
        fmt = "  ".join("{:<%d}" % w for w in widths[:3]) + "  {:>%d}" % widths[3]
        lines = ["%s: input %r %s %s, output %r, %d classes, %s parameters in %d blobs%s" % (
            self.name, self.input_name, "x".join(map(str, self.input_shape)), self.input_dtype.name,
            self.output_name, self.num_classes, "{:,}".format(self.num_params),
            len(self.param_shapes), " (STAND-IN weights, not pretrained)" if self.is_standin else "")]
        if self.folder:
            lines.append("from " + str(self.folder))
        lines.append(fmt.format(*head))
        lines.append(fmt.format(*("-" * w for w in widths)))
        lines.extend(fmt.format(*r) for r in rows)
        return "\n".join(lines)

    def __str__(self):
        return self.summary()

    def __repr__(self):
        return "<ZooModel %s: %r %s -> %r, %d params%s>" % (
            self.name, self.input_name, list(self.input_shape), self.output_name,
            len(self.param_shapes), ", stand-in" if self.is_standin else "")

    # ------------------------------------------------------------------ values
    def weights(self):
        """{blob: numpy array} of every parameter, by running the init net in a private workspace
        (GivenTensorFill values are read directly: no execution for the zoo's own format)."""
        out = OrderedDict()
        rest = caffe2_pb2.NetDef(name=self.init_net.name)
        for op in self.init_net.op:
            if op.type in GIVEN_FILLS and len(op.output) == 1:
                out[op.output[0]] = given_fill_value(op)
            else:
                rest.op.append(op)
        if rest.op:
            blobs = _nets.run_in_private_workspace([rest])
            for op in rest.op:
                for name in op.output:
                    out[name] = _nets.to_numpy(blobs[name])
        return OrderedDict((k, out[k]) for k in self.param_shapes if k in out)

    def copy(self, **changes):
        fields = dict(init_net=_nets.clone(self.init_net), predict_net=_nets.clone(self.predict_net),
                      input_name=self.input_name, input_shape=self.input_shape,
                      input_dtype=self.input_dtype, output_name=self.output_name,
                      class_names=self.class_names, folder=self.folder, is_standin=self.is_standin)
        fields.update(changes)
        return ZooModel(**fields)

    def save(self, folder, text=False):
        """Write the zoo folder format (init_net.pb, predict_net.pb[txt], value_info.json
        and labels.txt when class names are known)."""
        os.makedirs(folder, exist_ok=True)
        save_net(self.init_net, os.path.join(folder, INIT_NET))
        save_net(self.predict_net, os.path.join(folder, "predict_net.pbtxt" if text else "predict_net.pb"))
        write_value_info(os.path.join(folder, VALUE_INFO), self.input_name, self.input_shape,
                         self.input_dtype)
        if self.class_names:
            write_labels(os.path.join(folder, LABELS), self.class_names)
        return folder


# ---------------------------------------------------------------------- loading
def load(path, input_shape=None, class_names=None):
    """Load a Model Zoo folder (init_net.pb, predict_net.pb or .pbtxt, value_info.json).

    input_shape overrides value_info.json (and allows a folder without one). class_names: a list
    or a labels file; by default labels.txt in the folder when present."""
    folder = os.fspath(path)
    if not os.path.isdir(folder):
        raise ZooFileMissingError("Model Zoo folder %r does not exist (expected a folder holding %s, "
                                  "%s and %s)" % (folder, INIT_NET, " or ".join(PREDICT_NETS), VALUE_INFO))
    present = set(os.listdir(folder))
    missing = []
    if INIT_NET not in present:
        missing.append(INIT_NET)
    predict_file = next((f for f in PREDICT_NETS if f in present), None)
    if predict_file is None:
        missing.append(" or ".join(PREDICT_NETS))
    if VALUE_INFO not in present and input_shape is None:
        missing.append(VALUE_INFO)
    if missing:
        raise ZooFileMissingError("Model Zoo folder %r is missing %s (it holds: %s)" % (
            folder, ", ".join(missing), ", ".join(sorted(present)) or "nothing"))
    init_net = _load_netdef(os.path.join(folder, INIT_NET), "init net")
    predict_net = _load_netdef(os.path.join(folder, predict_file), "predict net")
    if VALUE_INFO in present:
        input_name, shape, dtype = read_value_info(os.path.join(folder, VALUE_INFO))
    else:
        input_name, shape, dtype = _guess_input(init_net, predict_net), None, np.float32
    if input_shape is not None:
        shape = tuple(input_shape)
    if class_names is None and LABELS in present:
        class_names = os.path.join(folder, LABELS)
    if isinstance(class_names, (str, os.PathLike)):
        class_names = read_labels(class_names)
    return ZooModel(init_net, predict_net, input_name, shape, dtype, class_names=class_names,
                    folder=folder)


def _load_netdef(path, role):
    try:
        net = load_net(path)
    except ProtobufParseError as e:
        raise ProtobufParseError("%s %s is not a usable caffe2 NetDef: %s" % (role, path, e)) from None
    if not net.op:
        raise ProtobufParseError("%s %s parsed as a NetDef but holds no operators (a truncated or "
                                 "different kind of file?)" % (role, path))
    return net


def read_value_info(path):
    """value_info.json -> (input name, shape, numpy dtype)."""
    try:
        with open(path) as fh:
            info = json.load(fh)
    except (OSError, ValueError) as e:
        raise ZooError("%s: not a readable value_info.json (%s)" % (path, e)) from None
    if not isinstance(info, dict) or len(info) != 1:
        raise ZooError("%s: expected one entry {\"<input blob>\": [data_type, [N, C, H, W]]}, got %r"
                       % (path, info))
    (name, value), = info.items()
    try:
        data_type, shape = value
        shape = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ZooError("%s: entry %r should be [data_type, [dims...]], got %r" % (path, name, value)) from None
    if data_type not in _INPUT_DTYPES:
        raise ZooError("%s: input %r has TensorProto data type %r; supported: %s"
                       % (path, name, data_type, sorted(_INPUT_DTYPES)))
    return name, shape, _INPUT_DTYPES[data_type]


def write_value_info(path, input_name, shape, dtype=np.float32):
    data_type = {np.dtype(v): k for k, v in reversed(list(_INPUT_DTYPES.items()))}[np.dtype(dtype)]
    with open(path, "w") as fh:
        json.dump({input_name: [data_type, [int(d) for d in shape]]}, fh)
        fh.write("\n")


def read_labels(path):
    with open(path) as fh:
        names = [line.strip() for line in fh if line.strip()]
    if not names:
        raise ZooError("%s: no class names in it" % path)
    return names


def write_labels(path, names):
    with open(path, "w") as fh:
        fh.write("\n".join(names) + "\n")


def _default_output(predict_net):
    if predict_net.external_output:
        return predict_net.external_output[-1]
    return predict_net.op[-1].output[0]


def _guess_input(init_net, predict_net):
    created = set(_param_shapes(init_net))
    for name in external_reads(predict_net):
        if name not in created:
            return name
    raise ZooError("predict net %r reads no blob the init net does not create: cannot tell its input"
                   % predict_net.name)


def _param_shapes(init_net):
    shapes = _nets.init_shapes(init_net)
    order = []
    for op in init_net.op:
        order.extend(o for o in op.output if o not in order)
    unknown = [o for o in order if o not in shapes]
    if unknown:  # a fill without a shape argument: run the init net to learn it
        blobs = _nets.run_in_private_workspace([init_net])
        for name in unknown:
            shapes[name] = tuple(blobs[name].shape)
    return [(name, shapes[name]) for name in order]


def check_complete(model):
    """Every blob the predict net reads, except the input, must come from the init net."""
    reads = external_reads(model.predict_net)
    if model.input_name not in reads:
        raise ZooError("predict net %r never reads the input blob %r named in value_info.json "
                       "(it reads: %s)" % (model.name, model.input_name, ", ".join(reads[:8])))
    missing = [b for b in reads if b != model.input_name and b not in model.param_shapes]
    if missing:
        where = " (%s)" % model.folder if model.folder else ""
        raise MissingParameterError(
            "init net%s does not create %d blob(s) the predict net reads: %s" % (
                where, len(missing), ", ".join(missing)))


def infer_shapes(model, batch_size=1):
    """Run the predict net on zeros (parameters zero too) in a private workspace; return shapes."""
    feeds = {name: torch.zeros(shape, dtype=torch.float32) for name, shape in model.param_shapes.items()}
    shape = (batch_size,) + tuple(model.input_shape[1:])
    feeds[model.input_name] = torch.zeros(shape, dtype=torch.from_numpy(
        np.zeros(0, model.input_dtype)).dtype)
    try:
        blobs = _nets.run_in_private_workspace([model.predict_net], feeds)
    except Caffe2Error as e:
        raise type(e)("while running %r on a zero input %s to learn blob shapes: %s"
                      % (model.name, list(shape), e)) from None
    return {k: tuple(v.shape) for k, v in blobs.items()
            if isinstance(v, torch.Tensor) and k not in model.param_shapes}


class Classifier:
    """The predict net's last weighted layer (Conv or FC) and the ops after it."""

    def __init__(self, index, op):
        self.index = index
        self.op = op
        self.type = op.type
        self.input = op.input[0]
        self.weight = op.input[1]
        self.bias = op.input[2] if len(op.input) > 2 else None
        self.output = op.output[0]

    def __repr__(self):
        return "<classifier %s %r: %s -> %s>" % (self.type, self.output, self.input, self.output)


WEIGHTED_OPS = ("Conv", "FC", "FCTransposed", "ConvTranspose")


def find_classifier(predict_net):
    for index in range(len(predict_net.op) - 1, -1, -1):
        op = predict_net.op[index]
        if op.type in WEIGHTED_OPS and len(op.input) >= 2:
            return Classifier(index, op)
    raise ZooError("predict net %r has no Conv or FC layer to act as the classifier" % predict_net.name)
