"""Put a zoo model into a ModelHelper for fine-tuning: frozen backbone, new classifier.

The training net `build_finetune_model` returns (input_kind="uint8"):

    data_uint8 ─Cast─► data_f ─Sub mean (broadcast, axis 1)─► data_c ─StopGradient─► data
      ─► zoo ops up to the boundary        frozen: not params, SpatialBN forced is_test=1,
                                           Dropout is_test=0 in training (follows the phase)
      ─► StopGradient  <blob> -> <blob>_frozen      no backward runs below this point
      ─► [zoo ops from `unfreeze_from` on]          trainable: their params join model.params
      ─► conv10 (brew.conv, new N-way) ─► Relu ─► global AveragePool ─► Softmax ─► softmaxout
      ─► LabelCrossEntropy ─► AveragedLoss "loss";  Flatten ─► Accuracy "accuracy" (+ top-5)

With input_kind="float" the net reads `data` (float NCHW, augmentation and mean subtraction
already done on the device) and only a StopGradient precedes the zoo ops. `is_test=True` builds
the matching test net (everything in test mode, no gradients, no init ops: it reuses the
training model's blobs). `model.params` lists exactly the trainable blobs; what was frozen, the
boundary and the per-parameter lr multipliers are in `model.finetune` (a FinetuneInfo).

`frozen_checksums` / `audit_frozen` prove the frozen blobs were not touched by training.
"""
import hashlib

import numpy as np

from food101.caffe2.errors import closest
from food101.data.augment import BGR_MEAN
from food101.caffe2.utils import ArgsToDict, set_arg
from food101.zoo import _nets
from food101.zoo.model import ZooError, find_classifier
from food101.zoo.surgery import replace_classifier

INPUT_KINDS = ("uint8", "float")


class FinetuneInfo:
    """What build_finetune_model decided; attached to the model as `model.finetune`.

    deploy            the ZooModel (after surgery) whose predict net is the inference form
    frozen_blobs      zoo blobs the net reads but must never change (weights, BN statistics, mean)
    new_params        the new classifier's params;  zoo_params: zoo params unfrozen for training
    boundary          {frozen blob: its StopGradient copy read by the trainable part}
    lr_mult           {param: learning-rate multiplier} (1.0 when absent)
    input_blob, label_blob, output_blob, loss_blob, accuracy_blob: blob names
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def __repr__(self):
        return "<FinetuneInfo %s: %d frozen blobs, trainable %s, boundary %s>" % (
            "test" if self.is_test else "train", len(self.frozen_blobs),
            self.zoo_params + self.new_params, sorted(self.boundary))


def build_finetune_model(zoo_model, num_classes=None, is_test=False, name=None, input_kind="uint8",
                         mean=BGR_MEAN, freeze_up_to=None, unfreeze_from=None, lr_mult=None,
                         train_dropout=True, weight_init="msra", class_names=None, with_loss=True,
                         top5=True, add_gradients=True, param_model=None):
    """A ModelHelper holding the zoo model with a new `num_classes`-way classifier.

    zoo_model: a ZooModel (1000-way from the zoo, or already re-headed by replace_classifier).
    num_classes: None keeps the model's classifier; a different count runs replace_classifier
        (weight_init "msra" by default: MSRAFill weights, zero bias; see zoo.surgery).
    freeze_up_to: a blob; every op up to its last write is frozen (default: everything below the
        classifier, i.e. "fire9/concat" for SqueezeNet).
    unfreeze_from: a layer or blob name ("fire9", "fire9/squeeze1x1"); the zoo ops from there up
        are trained too (fine-tune deeper). Give one of freeze_up_to / unfreeze_from.
    lr_mult: a number for every unfrozen zoo layer, or {layer or param prefix: multiplier};
        recorded per param in model.finetune.lr_mult and applied by build_finetune_sgd.
    train_dropout: Dropout runs in training mode (is_test=0) in the training net.
    is_test: build the test net (no init ops, no gradients, is_test=1 everywhere).
    param_model: the training ModelHelper, when building a test net that shares its params.
    """
    from food101.caffe2 import brew, core, model_helper

    if input_kind not in INPUT_KINDS:
        raise ZooError("input_kind %r: expected one of %s" % (input_kind, ", ".join(INPUT_KINDS)))
    if freeze_up_to is not None and unfreeze_from is not None:
        raise ZooError("give freeze_up_to or unfreeze_from, not both")
    zoo = zoo_model
    if num_classes is not None and num_classes != zoo.num_classes:
        zoo = replace_classifier(zoo, num_classes, class_names=class_names, weight_init=weight_init)
    pred = zoo.predict_net
    clf = find_classifier(pred)
    split = _split_index(pred, clf, freeze_up_to, unfreeze_from)
    train = not is_test

    model = model_helper.ModelHelper(name=name or ("food101_test" if is_test else "food101_train"),
                                     init_params=train, arg_scope={"order": "NCHW"},
                                     param_model=param_model)
    net = model.net
    # ---- input
    if input_kind == "uint8":
        input_blob = zoo.input_name + "_uint8"
        net.AddExternalInput(input_blob)
        net.Cast([input_blob], zoo.input_name + "_f", to=core.DataType.FLOAT)
        net.Sub([zoo.input_name + "_f", "mean"], zoo.input_name + "_c", broadcast=1, axis=1)
        net.StopGradient(zoo.input_name + "_c", zoo.input_name)
        if train and param_model is None:
            model.param_init_net.GivenTensorFill([], "mean", shape=[len(mean)],
                                                 values=[float(m) for m in mean])
    else:
        input_blob = zoo.input_name
        net.AddExternalInput(input_blob)
        net.StopGradient(input_blob, input_blob)
    # ---- zoo ops below the classifier: frozen ones, the boundary, trainable ones
    backbone = list(pred.op[:clf.index])
    frozen_ops, open_ops = backbone[:split], backbone[split:]
    params = set(zoo.param_shapes)
    frozen_blobs = [] if input_kind == "float" else ["mean"]
    for op in frozen_ops:
        op = _phase_op(op, train=False, dropout_train=train and train_dropout)
        net.Proto().op.append(op)
        frozen_blobs.extend(b for b in op.input if b in params and b not in frozen_blobs)
    boundary = _boundary(frozen_ops, open_ops + list(pred.op[clf.index:]))
    for blob, frozen in boundary.items():
        net.StopGradient(blob, frozen)
    rename = dict(boundary)
    zoo_params = []
    for op in open_ops:
        op = _rename_inputs(_phase_op(op, train=train, dropout_train=train and train_dropout), rename)
        net.Proto().op.append(op)
        _register_zoo_params(model, op, params, zoo_params, core, register=param_model is None)
    # ---- the classifier and the ops after it
    head = [_rename_inputs(_nets.clone(op), rename) for op in pred.op[clf.index:]]
    new_params = _add_classifier(model, brew, core, zoo, clf, head[0], train and param_model is None)
    for op in head[1:]:
        net.Proto().op.append(_phase_op(op, train=train, dropout_train=train and train_dropout))
    net.Proto().external_input.extend(b for b in frozen_blobs if b not in net.Proto().external_input)
    if train and param_model is None:  # the zoo's values for every zoo blob the net reads
        wanted = set(frozen_blobs) | set(zoo_params) | _bn_stats(open_ops)
        model.param_init_net.Proto().op.extend(
            _nets.clone(op) for op in zoo.init_net.op if wanted.intersection(op.output))
    # ---- loss and metrics
    output = zoo.output_name
    loss_blob = accuracy_blob = None
    if with_loss:
        net.AddExternalInput("label")
        xent = net.LabelCrossEntropy([output, "label"], "xent")
        loss_blob = str(net.AveragedLoss(xent, "loss"))
        flat = net.Flatten(output, output + "_2d")
        accuracy_blob = str(brew.accuracy(model, [flat, "label"], "accuracy"))
        if top5 and zoo.num_classes >= 5:
            brew.accuracy(model, [flat, "label"], "accuracy_top5", top_k=5)
        if train and add_gradients:
            model.AddGradientOperators([loss_blob])
    mults = _lr_multipliers(lr_mult, zoo_params, new_params)
    model.finetune = FinetuneInfo(
        deploy=zoo, is_test=is_test, input_kind=input_kind, mean=tuple(mean),
        frozen_blobs=frozen_blobs, zoo_params=zoo_params, new_params=new_params,
        boundary=boundary, lr_mult=mults, input_blob=input_blob, label_blob="label" if with_loss else None,
        output_blob=output, loss_blob=loss_blob, accuracy_blob=accuracy_blob,
        num_classes=zoo.num_classes, class_names=zoo.class_names, split_index=split)
    return model


def _split_index(pred, clf, freeze_up_to, unfreeze_from):
    """How many of the ops below the classifier are frozen."""
    ops = pred.op[:clf.index]
    if freeze_up_to is not None:
        writes = [i for i, op in enumerate(ops) if freeze_up_to in op.output]
        if not writes:
            names = {o for op in ops for o in op.output}
            hint = closest(freeze_up_to, names)
            raise ZooError("freeze_up_to=%r: no op below the classifier writes that blob%s" % (
                freeze_up_to, "; did you mean " + " or ".join(map(repr, hint)) if hint else ""))
        return writes[-1] + 1
    if unfreeze_from is not None:
        if unfreeze_from in (clf.output, clf.weight):
            return len(ops)
        for i, op in enumerate(ops):
            if any(_layer_match(unfreeze_from, name) for name in op.output):
                return i
        names = sorted({o for op in ops for o in op.output} | {o.split("/")[0] for op in ops
                                                                for o in op.output})
        hint = closest(unfreeze_from, names)
        raise ZooError("unfreeze_from=%r: no layer or blob of that name below the classifier%s" % (
            unfreeze_from, "; did you mean " + " or ".join(map(repr, hint)) if hint else ""))
    return len(ops)


def _layer_match(layer, blob):
    return blob == layer or blob.startswith(layer + "/") or blob.startswith(layer + "_")


def _phase_op(op, train, dropout_train):
    """A copy of a zoo op set for the phase: SpatialBN trains only when `train`; Dropout follows
    `dropout_train`. Test-mode ops get Caffe2's test-mode outputs (Y only)."""
    op = _nets.clone(op)
    if op.type == "SpatialBN":
        if train:
            y, mean, var = op.output[0], op.input[3], op.input[4]
            del op.output[:]
            op.output.extend([y, mean, var, y + "_sm", y + "_siv"])
            set_arg(op, "is_test", 0)
        else:
            del op.output[1:]
            set_arg(op, "is_test", 1)
    elif op.type == "Dropout":
        del op.output[1:]
        set_arg(op, "is_test", 0 if dropout_train else 1)
        if dropout_train:
            op.output.append("_" + op.output[0] + "_mask")
    return op


def _boundary(frozen_ops, later_ops):
    """{blob: blob_frozen} for each blob the frozen part produces and a later op reads."""
    if not frozen_ops:
        return {}
    produced = {o for op in frozen_ops for o in op.output}
    boundary, rewritten = {}, set()
    for op in later_ops:
        for name in op.input:
            if name in produced and name not in rewritten and name not in boundary:
                boundary[name] = name + "_frozen"
        rewritten.update(op.output)
    return boundary


def _rename_inputs(op, rename):
    """Point reads at the StopGradient copies; a blob rewritten later stops being renamed."""
    for i, name in enumerate(op.input):
        if name in rename:
            op.input[i] = rename[name]
    for name in op.output:
        rename.pop(name, None)
    return op


_PARAM_ROLES = {  # op type -> {input position: tag}
    "Conv": {1: "WEIGHT", 2: "BIAS"}, "FC": {1: "WEIGHT", 2: "BIAS"},
    "FCTransposed": {1: "WEIGHT", 2: "BIAS"}, "ConvTranspose": {1: "WEIGHT", 2: "BIAS"},
    "SpatialBN": {1: "WEIGHT", 2: "BIAS", 3: "COMPUTED_PARAM", 4: "COMPUTED_PARAM"},
}


def _register_zoo_params(model, op, params, zoo_params, core, register=True):
    """Unfrozen zoo blobs become params (SpatialBN statistics: computed params); a test net
    sharing the training model's params (param_model) only records them."""
    from food101.caffe2.modeling.parameter_info import ParameterTags
    roles = _PARAM_ROLES.get(op.type, {})
    for position, name in enumerate(op.input):
        if name not in params or name in zoo_params:
            continue
        tag = getattr(ParameterTags, roles.get(position, "WEIGHT"))
        if register:
            model.AddParameter(core.BlobReference(name), tag)
        if tag != ParameterTags.COMPUTED_PARAM:
            zoo_params.append(name)


def _bn_stats(ops):
    return {op.input[i] for op in ops if op.type == "SpatialBN" for i in (3, 4)}


def _add_classifier(model, brew, core, zoo, clf, op, init_params):
    """The new classifier through brew (params with Caffe2's tags and ParameterInfo), its
    initialisation taken from the zoo model's init net (the fill replace_classifier chose).
    FC classifiers and blob names brew would not choose keep the zoo op as it is."""
    args = ArgsToDict(op.arg)
    w_shape = zoo.param_shapes[clf.weight]
    inits = {o: fill for fill in zoo.init_net.op for o in fill.output}

    def initializer(blob):
        fill = inits[blob]
        fill_args = {k: v for k, v in ArgsToDict(fill.arg).items() if k != "shape"}
        return (fill.type, fill_args) if init_params else None

    brew_names = {clf.weight: clf.output + "_w"}
    if clf.bias:
        brew_names[clf.bias] = clf.output + "_b"
    if op.type == "Conv" and all(k == v for k, v in brew_names.items()):
        geometry = {k: v for k, v in args.items() if k in (
            "stride", "strides", "pad", "pads", "pad_t", "pad_l", "pad_b", "pad_r", "stride_h",
            "stride_w", "dilation", "dilations", "group")}
        brew.conv(model, op.input[0], clf.output, int(w_shape[1]) * int(args.get("group", 1)),
                  int(w_shape[0]), kernel=[int(d) for d in w_shape[2:]],
                  weight_init=initializer(clf.weight),
                  bias_init=initializer(clf.bias) if clf.bias else None,
                  no_bias=clf.bias is None, **geometry)
    elif op.type in ("Conv", "FC", "FCTransposed", "ConvTranspose"):
        # blob names brew would not choose (e.g. an ONNX import's conv10_w_0): keep the op as it
        # is and create its params the way brew does (tags, ParameterInfo, init ops)
        from food101.caffe2.modeling import initializers
        from food101.caffe2.modeling.parameter_info import ParameterTags
        for blob, tag in ((clf.weight, ParameterTags.WEIGHT), (clf.bias, ParameterTags.BIAS)):
            if blob is None:
                continue
            fill = initializer(blob)
            init = initializers.Initializer(fill[0], **fill[1]) if fill else initializers.ExternalInitializer()
            model.create_param(blob, list(zoo.param_shapes[blob]), init, tags=tag)
        model.net.Proto().op.append(op)
    else:
        raise ZooError("classifier op %s is not supported by the fine-tune builder (Conv or FC)" % op.type)
    return [clf.weight] + ([clf.bias] if clf.bias else [])


def _lr_multipliers(lr_mult, zoo_params, new_params):
    """{param: multiplier} for every trainable param (new layers default to 1.0)."""
    mults = {p: 1.0 for p in new_params + zoo_params}
    if lr_mult is None:
        return mults
    items = [(p, lr_mult) for p in zoo_params] if isinstance(lr_mult, (int, float)) else lr_mult.items()
    for key, value in items:
        hits = [p for p in mults if p == key or _layer_match(key, p)]
        if not hits:
            raise ZooError("lr_mult key %r matches no trainable param (trainable: %s)"
                           % (key, ", ".join(mults)))
        for p in hits:
            mults[p] = float(value)
    bad = {p: m for p, m in mults.items() if not m > 0}
    if bad:
        raise ZooError("lr_mult must be > 0 (freeze a layer instead): %s" % bad)
    return mults


def build_finetune_sgd(model, base_learning_rate, weight_decay=None, **sgd_kwargs):
    """Caffe2 SGD for a fine-tune model with per-parameter lr multipliers.

    Params whose multiplier is not 1 get their own SgdOptimizer (Caffe2's ParameterInfo.optimizer)
    with base_learning_rate * multiplier and the same policy/momentum; the rest share one.
    weight_decay, when given, is optimizer.add_weight_decay (weights only) first."""
    from food101.caffe2 import core, optimizer
    info = getattr(model, "finetune", None)
    if weight_decay:
        optimizer.add_weight_decay(model, weight_decay)
    by_mult = {}
    for param, mult in (info.lr_mult.items() if info else ()):
        if mult == 1.0:
            continue
        if mult not in by_mult:
            by_mult[mult] = optimizer.SgdOptimizer(base_learning_rate * mult, **sgd_kwargs)
        param_info = model.get_param_info(core.BlobReference(param))
        if param_info is None:
            raise ZooError("param %r has no ParameterInfo (call AddGradientOperators first)" % param)
        param_info.optimizer = by_mult[mult]
    return optimizer.build_sgd(model, base_learning_rate, **sgd_kwargs)


# ---------------------------------------------------------------------- frozen-blob audit
def frozen_checksums(model_or_names, workspace=None):
    """{blob: sha256 of dtype, shape and bytes} for the frozen blobs (model.finetune.frozen_blobs,
    or a list of names), read from the current workspace (or a food101 Workspace object)."""
    names = model_or_names.finetune.frozen_blobs if hasattr(model_or_names, "finetune") else list(
        model_or_names)
    blobs = _blob_source(workspace)
    sums = {}
    for name in names:
        if name not in blobs:
            sums[name] = None
            continue
        array = np.ascontiguousarray(_nets.to_numpy(blobs[name]))
        digest = hashlib.sha256()
        digest.update(("%s%s" % (array.dtype.str, array.shape)).encode())
        digest.update(array.tobytes())
        sums[name] = digest.hexdigest()
    return sums


def _blob_source(workspace):
    if workspace is None:
        from food101.caffe2 import workspace as ws_module
        return ws_module.current().blobs
    if hasattr(workspace, "current"):  # the workspace module (its `blobs` fetches numpy)
        return workspace.current().blobs
    return workspace.blobs if hasattr(workspace, "blobs") else workspace


class FrozenAudit:
    """The result of comparing frozen-blob checksums before and after a run."""

    def __init__(self, before, after):
        self.before, self.after = before, after
        self.changed = sorted(b for b in before if before[b] is not None and after.get(b) is not None
                              and before[b] != after[b])
        self.missing = sorted(b for b in before if before[b] is None or after.get(b) is None)
        self.checked = len(before) - len(self.missing)

    @property
    def ok(self):
        return not self.changed and not self.missing

    def report(self):
        if self.ok:
            return "frozen-blob audit: %d blobs bit-identical" % self.checked
        lines = ["frozen-blob audit FAILED: %d of %d blobs changed, %d missing"
                 % (len(self.changed), len(self.before), len(self.missing))]
        lines += ["  changed: %s (%s -> %s)" % (b, self.before[b][:12], self.after[b][:12])
                  for b in self.changed]
        lines += ["  missing: %s" % b for b in self.missing]
        return "\n".join(lines)

    def check(self):
        if not self.ok:
            raise ZooError(self.report())
        return self

    def __repr__(self):
        return "<FrozenAudit %s>" % self.report().splitlines()[0]


def audit_frozen(before, model_or_names=None, workspace=None):
    """Compare `before` (from frozen_checksums) with the blobs now; returns a FrozenAudit."""
    names = model_or_names if model_or_names is not None else list(before)
    return FrozenAudit(before, frozen_checksums(names, workspace))
