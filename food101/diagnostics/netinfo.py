"""Reading a training NetDef: which ops are forward, gradient and update, who writes a blob.

A Caffe2 training net is laid out as

    [forward ops] [gradient ops: AutogradGradient here, XxxGradient in real Caffe2 nets] [update ops]

and in-place blobs (params, momenta, Iter, SpatialBN running statistics) are read before the
net writes them. These helpers answer the questions the checks ask, on the NetDef alone.
"""
from food101.caffe2.proto import caffe2_pb2
from food101.caffe2.utils import ArgsToDict, as_netdef as _single_netdef, external_reads

# Optimizer ops: type -> position of the output that is the updated parameter.
UPDATE_OPS = {
    "WeightedSum": 0, "MomentumSGDUpdate": 2, "MomentumSGD": 1, "SparseMomentumSGDUpdate": 2,
    "Adam": 0, "SparseAdam": 0, "Adagrad": 0, "SparseAdagrad": 0, "RmsProp": 0, "Ftrl": 0,
    "Lars": 0, "YellowFin": 0, "Wngrad": 0, "Adadelta": 0,
}
COUNTER_OPS = frozenset({"Iter", "AtomicIter"})
GRADIENT_OP = "AutogradGradient"
LOSS_INPUT_OPS = ("LabelCrossEntropy", "SoftmaxWithLoss", "CrossEntropy",
                  "SigmoidCrossEntropyWithLogits")


def as_netdef(net):
    """A NetDef from a NetDef, a core.Net, or a list of them (a training step split into
    several nets, e.g. forward/backward + update): their ops concatenated in run order."""
    if isinstance(net, (list, tuple)):
        parts = [as_netdef(n) for n in net]
        if len(parts) == 1:
            return parts[0]
        combined = caffe2_pb2.NetDef(name="+".join(p.name for p in parts))
        for part in parts:
            combined.op.extend(part.op)
        _COMBINED[combined.name] = [(p.name, len(p.op)) for p in parts]
        if parts[0].HasField("device_option"):
            combined.device_option.CopyFrom(parts[0].device_option)
        return combined
    return _single_netdef(net)


_COMBINED = {}  # combined net name -> [(member net name, number of ops)]


def locate(net_name, index):
    """(net name, op index) of op `index` of a (possibly combined) net, for messages."""
    for name, count in _COMBINED.get(net_name, ()):
        if index < count:
            return name, index
        index -= count
    return net_name, index


def op_ref(netdef, index):
    """"op #i", or "op #i of net 'x_update'" when `netdef` combines several nets."""
    name = netdef if isinstance(netdef, str) else netdef.name
    if name not in _COMBINED:
        return "op #%d" % index
    member, local = locate(name, index)
    return "op #%d of net %r" % (local, member)


def net_names(net):
    """The names of the created nets behind `net` (one, or each of a list)."""
    if isinstance(net, (list, tuple)):
        return [as_netdef(n).name for n in net]
    return [as_netdef(net).name]


def is_gradient_op(op):
    # real Caffe2 nets mark their XxxGradient ops; StopGradient is a forward op
    return op.type == GRADIENT_OP or op.is_gradient_op or (
        op.type.endswith("Gradient") and op.type != "StopGradient")


def forward_end(netdef):
    """Index of the first gradient op (= number of forward ops)."""
    for i, op in enumerate(netdef.op):
        if is_gradient_op(op):
            return i
    return len(netdef.op)


# Blobs the net takes from the workspace, in first-read order (params, data, state).
read_before_written = external_reads


def writers(netdef):
    """{blob: [op index, ...]} for every blob the net writes."""
    out = {}
    for i, op in enumerate(netdef.op):
        for name in op.output:
            out.setdefault(name, []).append(i)
    return out


def last_writer(netdef, blob):
    """(index, op) of the last op writing `blob`, or (None, None)."""
    for i in range(len(netdef.op) - 1, -1, -1):
        if blob in netdef.op[i].output:
            return i, netdef.op[i]
    return None, None


# Ops whose in-place output is their input unchanged (StopGradient data -> data).
PASS_THROUGH_OPS = frozenset({"StopGradient", "Alias", "Copy", "EnsureCPUOutput", "Print"})


def state_blobs(netdef):
    """Blobs the net reads from the workspace and writes back: the training state that an
    iteration changes (params, momenta, Iter, running statistics). A fed input that only a
    pass-through op rewrites in place (StopGradient data -> data) is not state."""
    written = writers(netdef)
    return [b for b in read_before_written(netdef)
            if any(netdef.op[i].type not in PASS_THROUGH_OPS for i in written.get(b, ()))]


def running_statistics(netdef):
    """Blobs a training-mode SpatialBN reads and writes back (its running mean/variance)."""
    out = set()
    for op in netdef.op:
        if op.type == "SpatialBN" and not int(ArgsToDict(op.arg).get("is_test", 0)):
            out.update(b for b in op.output[1:3] if b in op.input)
    return out


def update_targets(netdef):
    """{updated blob: (op index, op)} for optimizer ops, and the set of their auxiliary outputs
    (momenta, moments) and counters, which legitimately change every iteration."""
    targets, aux = {}, set()
    for i, op in enumerate(netdef.op):
        if op.type in COUNTER_OPS:
            aux.update(op.output)
        elif op.type in UPDATE_OPS:
            pos = UPDATE_OPS[op.type]
            if op.type == "WeightedSum" and not (op.output and op.input and op.output[0] == op.input[0]):
                continue  # a WeightedSum that is not an in-place update
            if pos < len(op.output):
                targets[op.output[pos]] = (i, op)
            aux.update(o for j, o in enumerate(op.output) if j != pos)
    return targets, aux


def producers_before(netdef, blob, stop):
    """The op (index, op) that last wrote `blob` before op `stop`, or (None, None)."""
    for i in range(min(stop, len(netdef.op)) - 1, -1, -1):
        if blob in netdef.op[i].output:
            return i, netdef.op[i]
    return None, None


def first_conv_input(netdef):
    """The blob the first Conv reads (the network input after Cast/Sub/Scale preprocessing)."""
    for op in netdef.op[:forward_end(netdef)]:
        if op.type in ("Conv", "Conv2D", "ConvTranspose") and op.input:
            return op.input[0]
    return None


def loss_probabilities(netdef):
    """(blob holding N x C class scores/probabilities, label blob) of the first loss op."""
    for op in netdef.op[:forward_end(netdef)]:
        if op.type in LOSS_INPUT_OPS and len(op.input) >= 2:
            return op.input[0], op.input[1]
    return None, None


def per_sample_loss(netdef):
    """A blob holding one loss value per sample (LabelCrossEntropy's output), or None."""
    for op in netdef.op[:forward_end(netdef)]:
        if op.type in ("LabelCrossEntropy", "CrossEntropy") and op.output:
            return op.output[0]
    return None


def learning_rate_ops(netdef):
    return [(i, op) for i, op in enumerate(netdef.op) if op.type == "LearningRate"]


def lr_consumers(netdef, lr_blob):
    """Ops that read `lr_blob`, following sign-preserving or sign-flipping rescales.

    Yields (index, op, input position, sign) where sign is +1/-1 relative to the LearningRate
    op's value (a Scale by a negative factor or a Negative flips it)."""
    frontier = [(lr_blob, 1.0)]
    seen = set()
    while frontier:
        blob, sign = frontier.pop()
        if blob in seen:
            continue
        seen.add(blob)
        for i, op in enumerate(netdef.op):
            for pos, name in enumerate(op.input):
                if name != blob:
                    continue
                if op.type == "Scale" and op.output:
                    factor = ArgsToDict(op.arg).get("scale", 1.0)
                    frontier.append((op.output[0], sign * (1.0 if factor >= 0 else -1.0)))
                elif op.type in ("Negative",) and op.output:
                    frontier.append((op.output[0], -sign))
                elif op.type == "Mul" and op.output:  # lr multipliers (lr_mult) are >= 0
                    frontier.append((op.output[0], sign))
                elif op.type in ("Copy", "Alias", "EnsureCPUOutput", "CopyCPUToGPU",
                                 "CopyGPUToCPU") and op.output:
                    frontier.append((op.output[0], sign))
                else:
                    yield i, op, pos, sign
