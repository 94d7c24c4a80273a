"""The nets of a fine-tuning run, built from the zoo model with ModelHelper/brew/optimizer.

The train model is one ModelHelper net, built by `food101.zoo.finetune` and
`food101.caffe2.optimizer`, then split at its AutogradGradient op into a forward/backward net and
an update net (`split_at_gradient`), so gradient accumulation adds two tiny ops
(`add_accumulation`) and bf16 autocast wraps only the forward/backward part (params, gradients
and the update stay float32). `TrainingNets` carries them with the blob names the engine feeds
and reads.
"""
import dataclasses
import os

from food101 import zoo
from food101.caffe2 import core, optimizer
from food101.caffe2.executor import AUTOGRAD_OP
from food101.caffe2.proto import caffe2_pb2
from food101.caffe2.utils import ArgsToDict
from food101.interop.backbone import load_backbone
from food101.interop.caffe.netfile import CaffeFormatError
from food101.train import caffe_setup
from food101.train import config as C


class TrainingError(RuntimeError):
    """The run cannot start or go on (no GPU for --gpu, missing LMDB, a bad checkpoint, ...)."""


@dataclasses.dataclass
class TrainingNets:
    """The nets of a run and the blob names the driver feeds and reads."""
    fwd_bwd: caffe2_pb2.NetDef
    update: caffe2_pb2.NetDef
    test: caffe2_pb2.NetDef
    init: list                      # NetDefs run once (param init, optimizer state)
    data: str                       # float NCHW input (augmented, mean subtracted)
    label: str
    loss: str
    accuracy: str
    probs: str                      # class probabilities of the test net
    params: list                    # trained params
    lr_blob: str                    # the LearningRate output logged as "lr"
    lr_scale: float                 # 1.0, or base_lr / that op's base_lr (lr multipliers)
    class_names: list
    train_model: object = None      # the train ModelHelper (its finetune.deploy is exported)
    zoo_note: str = ""              # which zoo weights (real, or the stand-in and why)
    frozen_blobs: list = dataclasses.field(default_factory=list)
    zoo_model: object = None        # the zoo model as loaded (its pretrained values)
    notes: list = dataclasses.field(default_factory=list)  # translation notes, Caffe findings
    # a Caffe net's outputs the log shows, [(blob, loss_weight or None)] (Caffe's "Train net
    # output #k"); empty: the accuracy and the loss
    outputs: list = dataclasses.field(default_factory=list)
    test_names: dict = dataclasses.field(default_factory=dict)  # {"top1": the net's name, ...}
    covered: set = dataclasses.field(default_factory=set)  # diagnostics codes the notes say


def split_at_gradient(netdef, name):
    """(forward+backward ops, update ops) of a train net, split after its AutogradGradient op."""
    index = next((i for i, op in enumerate(netdef.op) if op.type == AUTOGRAD_OP), None)
    if index is None:
        raise TrainingError("the train net %r has no gradient op; call AddGradientOperators "
                            "before building the optimizer" % netdef.name)
    fwd_bwd = caffe2_pb2.NetDef()
    fwd_bwd.CopyFrom(netdef)
    fwd_bwd.name = name + "_fwd_bwd"
    del fwd_bwd.op[index + 1:]
    update = caffe2_pb2.NetDef()
    update.CopyFrom(netdef)
    update.name = name + "_update"
    del update.op[:index + 1]
    return fwd_bwd, update


def add_accumulation(fwd_bwd, update, grads, iter_size):
    """Gradient accumulation in Caffe2 ops: each forward/backward pass adds its gradients into
    <grad>_acc; the update net first sets <grad> = <grad>_acc / iter_size, and after the update
    zeroes the accumulator for the next one. Returns {accumulator: gradient} to initialise."""
    accumulators = {}
    for grad in grads:
        acc = grad + "_acc"
        accumulators[acc] = grad
        fwd_bwd.op.extend([core.CreateOperator("Sum", [acc, grad], [acc])])
    scale_ops = [core.CreateOperator("Scale", [acc], [grad], scale=1.0 / iter_size)
                 for acc, grad in accumulators.items()]
    reset_ops = [core.CreateOperator("Scale", [acc], [acc], scale=0.0) for acc in accumulators]
    ops = scale_ops + list(update.op) + reset_ops
    del update.op[:]
    update.op.extend(ops)
    return accumulators


def load_zoo_model(model_cfg):
    """The backbone: model.zoo_dir (a Model Zoo folder, an .onnx file or a folder with one, a
    Caffe deploy.prototxt + .caffemodel folder), else the downloaded SqueezeNet, else the
    seeded stand-in."""
    if model_cfg.zoo_dir:
        if not os.path.exists(model_cfg.zoo_dir):
            raise TrainingError("model.zoo_dir: %s does not exist (expected a Model Zoo folder, an "
                                ".onnx file, or a Caffe deploy.prototxt + .caffemodel folder)"
                                % model_cfg.zoo_dir)
        try:
            return load_backbone(model_cfg.zoo_dir), "%s" % model_cfg.zoo_dir
        except zoo.ZooError as e:
            raise TrainingError("model.zoo_dir: %s" % e) from None
    location = zoo.locate_squeezenet()
    return location.load(), location.note


def build_training_nets(cfg, class_names, device_option, image_shape=None):
    """Train (forward+backward, update) and test nets of the fine-tuning run, on the device.
    image_shape: the records' C x H x W (a Caffe net's input channels and, without crop_size,
    its input size come from them, as in Caffe)."""
    nets = (_caffe_training_nets(cfg, class_names, device_option, image_shape)
            if cfg.model.caffe_net else _zoo_training_nets(cfg, class_names, device_option))
    if cfg.solver.lr_numbering == "caffe":
        read_iteration_before_increment(nets.update)
    return nets


def read_iteration_before_increment(update):
    """Caffe's order in an update net (in place): the ops that read the optimizer's iteration
    counter (LearningRate) run before the Iter/AtomicIter that increments it, so update k
    computes its rate at k - 1, as Caffe's SGDSolver reads iter_ and increments it after the
    update. Caffe2's build_sgd increments first: update k reads k."""
    ops = list(update.op)
    counters = [i for i, op in enumerate(ops) if op.type in ("Iter", "AtomicIter")]
    for index in reversed(counters):
        counter = ops[index].output[0]
        readers = [i for i, op in enumerate(ops) if i != index and counter in op.input]
        if not readers or max(readers) < index:
            continue
        ops.insert(max(readers), ops.pop(index))  # right after the last reader
    del update.op[:]
    update.op.extend(ops)
    return update


def _zoo_training_nets(cfg, class_names, device_option):
    """The zoo model (model.zoo_dir, else SqueezeNet) with a new classifier as the run's nets."""
    model_cfg, solver = cfg.model, cfg.solver
    zoo_model, zoo_note = load_zoo_model(model_cfg)
    notes = [_classifier_note(zoo_model, model_cfg)]
    food = zoo.replace_classifier(zoo_model, model_cfg.num_classes, class_names=list(class_names),
                                  weight_init=model_cfg.weight_init, bias_init=model_cfg.bias_init)
    choice = dict(freeze_up_to=model_cfg.freeze_up_to or None,
                  unfreeze_from=model_cfg.unfreeze_from or None)
    optimizer.reset_optimizer_instance_count()  # stable blob names: checkpoints resume anywhere
    with core.DeviceScope(device_option):
        train = zoo.build_finetune_model(food, input_kind="float", train_dropout=model_cfg.train_dropout,
                                         class_names=list(class_names), **choice)
        info = train.finetune
        for p in info.new_params:
            info.lr_mult[p] = model_cfg.new_lr_mult
        for p in info.zoo_params:
            info.lr_mult[p] = model_cfg.backbone_lr_mult
        policy_args = C.lr_policy_args(solver)
        zoo.build_finetune_sgd(train, solver.base_lr, weight_decay=solver.weight_decay or None,
                               policy=solver.lr_policy, momentum=solver.momentum,
                               nesterov=int(solver.nesterov), **policy_args)
        test = zoo.build_finetune_model(food, is_test=True, param_model=train, input_kind="float",
                                        class_names=list(class_names), with_loss=False, **choice)
    for net in (train.param_init_net, train.net, test.net):
        net.Proto().device_option.CopyFrom(device_option)
    fwd_bwd, update = split_at_gradient(train.net.Proto(), train.net.Proto().name)
    lr_blob, lr_scale = _base_lr_blob(update, solver.base_lr)
    return TrainingNets(
        fwd_bwd=fwd_bwd, update=update, test=test.net.Proto(), init=[train.param_init_net.Proto()],
        data=info.input_blob, label=info.label_blob, loss=info.loss_blob,
        accuracy=info.accuracy_blob, probs=test.finetune.output_blob,
        params=[str(p) for p in train.GetParams()], lr_blob=lr_blob, lr_scale=lr_scale,
        class_names=list(class_names), train_model=train, zoo_note=zoo_note,
        frozen_blobs=list(info.frozen_blobs), zoo_model=zoo_model, notes=notes)


def _classifier_note(zoo_model, model_cfg):
    """What classifier surgery does to the backbone, as the Caffe route says it."""
    clf = zoo.find_classifier(zoo_model.predict_net)
    name = clf.op.name or clf.op.output[0]
    return ("%s: classifier (%s %s) outputs %d -> %d (the training set's classes); its weights "
            "start from model.weight_init %s" % (name, clf.op.type, clf.weight,
                                                  zoo_model.num_classes, model_cfg.num_classes,
                                                  model_cfg.weight_init))


def _caffe_training_nets(cfg, class_names, device_option, image_shape=None):
    """A solver's train_val.prototxt (model.caffe_net) as the run's nets (train.caffe_setup)."""
    try:
        built = caffe_setup.build(cfg, class_names, device_option, image_shape)
    except (caffe_setup.CaffeSetupError, CaffeFormatError) as e:
        raise TrainingError(str(e)) from None
    train = built["model"]
    fwd_bwd, update = split_at_gradient(train.net.Proto(), train.net.Proto().name)
    lr_blob, lr_scale = _base_lr_blob(update, cfg.solver.base_lr)
    return TrainingNets(
        fwd_bwd=fwd_bwd, update=update, test=built["test"], init=[train.param_init_net.Proto()],
        data=built["data"], label=built["label"], loss=built["loss"], accuracy=built["accuracy"],
        probs=built["probs"], params=[str(p) for p in train.GetParams()], lr_blob=lr_blob,
        lr_scale=lr_scale, class_names=list(class_names), train_model=train,
        zoo_note=built["note"], frozen_blobs=built["frozen_blobs"], zoo_model=None,
        notes=built["notes"], outputs=built["outputs"], test_names=built["test_names"],
        covered=built["covered"])


def _base_lr_blob(update, base_lr):
    """The LearningRate output whose base_lr is solver.base_lr (others carry lr multipliers),
    and the factor that turns any of them into the base rate when no param uses the base."""
    candidates = []
    for op in update.op:
        if op.type == "LearningRate":
            args = ArgsToDict(op.arg)
            candidates.append((abs(abs(args["base_lr"]) - base_lr), op.output[0], abs(args["base_lr"])))
    if not candidates:
        raise TrainingError("the update net has no LearningRate op (no trainable params?)")
    _, blob, op_base = min(candidates)
    return blob, (1.0 if abs(op_base - base_lr) <= 1e-7 * base_lr else base_lr / op_base)
