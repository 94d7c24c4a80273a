"""Training a Caffe setup: a solver's `net:` (train_val.prototxt) as the trainer's nets.

    train_val.prototxt ─translate(TRAIN)─► train ops ─► weighted loss sum ─► AutogradGradient
                       │                    decay_mult weight decay, lr_mult groups ─► SGD update
                       └─translate(TEST)──► test ops (label-reading ops pruned) ─► probabilities

The Data/ImageData layers become the trainer's inputs (the LMDB reader feeds `data` and `label`;
transform_param crop/mean/mirror are the data.* keys config.caffe_data_updates sets, `scale` is a
Scale op at the input). Parameters start from the layers' fillers, or from a .caffemodel given as
model.zoo_dir (Caffe's `--weights`), by layer name. A classifier whose num_output differs from the
training set's class count (SqueezeNet's 1000) is resized, with a note. The notes of the
translation and the Caffe findings (a BatchNorm layer that changes its statistics although the
net is frozen, a poly schedule that never decays within the run) are returned for the log.
"""
import os

from food101.caffe2.utils import ArgsToDict, make_op
from food101.caffe2 import core, model_helper, optimizer
from food101.caffe2.modeling.parameter_info import ParameterTags
from food101.caffe2.proto import caffe2_pb2
from food101.data.augment import crop_size_of
from food101.interop.caffe import caffe_pb2, netfile, translator
from food101.train import config as C
from food101.train import schedule
from food101.zoo.finetune import FinetuneInfo, build_finetune_sgd
from food101.zoo.model import ZooModel


# Layers between a classifier and its loss that keep the class count.
_PASS_THROUGH = ("Pooling", "ReLU", "Dropout", "Flatten", "Reshape", "Softmax", "Split")


class CaffeSetupError(ValueError):
    """A Caffe net the trainer cannot train as it is; the message names the layer."""


def classifier_layers(net):
    """The layers that produce the scores of each SoftmaxWithLoss (Convolution/InnerProduct,
    found through the pass-through layers between them and the loss)."""
    producers = {}
    for layer in net.layer:
        for top in layer.top:
            producers.setdefault(top, []).append(layer)
    found = []
    for loss in [l for l in net.layer if l.type == "SoftmaxWithLoss"]:
        blob, seen = loss.bottom[0], set()
        while blob in producers and blob not in seen:
            seen.add(blob)
            layer = next((l for l in reversed(producers[blob]) if l.type not in _PASS_THROUGH),
                         producers[blob][0])
            if layer.type in ("Convolution", "InnerProduct"):
                found.append(layer)
                break
            if layer.type not in _PASS_THROUGH:
                break
            blob = layer.bottom[0]
    return found


def _num_output_param(layer):
    return layer.convolution_param if layer.type == "Convolution" else layer.inner_product_param


def net_num_classes(net_path):
    """The class count a Caffe net is written for: its classifiers' num_output (the largest,
    if they differ); None when no SoftmaxWithLoss is fed by one."""
    net = netfile.read_net(net_path, dropped=[])  # its fork fields are noted by build()
    outputs = [_num_output_param(l).num_output for l in classifier_layers(net)]
    return max(outputs) if outputs else None


def resize_classifiers(net, num_classes):
    """Set num_output of every layer that feeds a SoftmaxWithLoss to `num_classes`; notes."""
    notes = []
    for layer in classifier_layers(net):
        param = _num_output_param(layer)
        if param.num_output != num_classes:
            notes.append((layer.name, "classifier num_output %d -> %d (the training set's "
                                      "classes); its weights start from the filler"
                          % (param.num_output, num_classes)))
            param.num_output = num_classes
    return notes


# food101.diagnostics finding codes a Caffe finding makes redundant: the solver's poly finding
# says what lr_poly_power says; the frozen-BatchNorm finding what bn_running_stats_drift says.
COVERS_SOLVER = ("lr_poly_power",)
COVERS_LAYER = ("bn_running_stats_drift",)


def caffe_findings(train, solver, net_path):
    """Caffe-level findings for the start of a run: (layer, message) pairs."""
    findings = []
    trained = [p for p in train.params.values() if p.lr_mult > 0]
    frozen_net = not trained or solver.base_lr == 0
    for name, op, explicit in train.bn_layers:
        if ArgsToDict(op.arg).get("is_test"):
            continue
        layer_params = [p for p in train.params.values() if p.layer == name]
        if frozen_net or all(p.lr_mult == 0 for p in layer_params):
            findings.append((name, (
                "BatchNorm layer %r updates its running statistics (mean, variance) at every "
                "training iteration although every parameter is frozen (lr_mult: 0%s): in the TRAIN "
                "phase it normalises with each batch's own statistics and moves its stored ones "
                "towards them, so the loss changes with lr 0 and the test accuracy drifts. Set "
                "batch_norm_param { use_global_stats: true } on it in %s (propagate_down and "
                "lr_mult do not stop this).") % (name, ", base_lr: 0" if solver.base_lr == 0 else "",
                                                 os.path.basename(net_path))))
    if solver.lr_policy == "poly" and solver.base_lr > 0:
        probe = [i for i in (10000, 100000) if i < solver.max_iter]
        shares = ", ".join("%.1f%% at iteration %d" % (100 * schedule.rate_at(solver, i)
                                                        / solver.base_lr, i) for i in probe)
        if solver.max_iter >= 100000 or solver.power < 1:
            tail = " and, with power < 1, falls mostly in the last stretch" if solver.power < 1 else ""
            where = ("lr is still " + shares + " of base_lr") if shares else "the whole run is one decay"
            findings.append(("solver", "lr_policy poly with power %g and max_iter %d: the rate reaches "
                                       "0 only at max_iter%s; %s. If the run is shorter than "
                                       "max_iter, the rate hardly decays: set max_iter to the "
                                       "iterations you will run." % (solver.power, solver.max_iter,
                                                                     tail, where)))
    return findings


def build(cfg, class_names, device_option, image_shape=None):
    """The trainer's nets for cfg.model.caffe_net; a dict of TrainingNets fields.

    image_shape: the records' C x H x W. The Data layers' tops are C x crop x crop (the whole
    H x W without a crop, data.crop_size 0), C taken from the records as Caffe's DataLayer
    does; without it, 3 x crop x crop."""
    net_path = cfg.model.caffe_net
    dropped = []
    net = netfile.read_net(net_path, dropped=dropped)
    # each fork field once, with the translation notes (the file is read more than once)
    notes = [(layer, netfile.dropped_field_note(owner, field)) for layer, owner, field in dropped]
    notes += resize_classifiers(net, len(class_names))
    weights, source = None, "the layers' fillers"
    if cfg.model.zoo_dir:
        if not cfg.model.zoo_dir.endswith(".caffemodel"):
            raise CaffeSetupError("model.zoo_dir %r: with a Caffe net (model.caffe_net) the weights "
                                  "are a .caffemodel" % cfg.model.zoo_dir)
        weights, source = netfile.read_caffemodel(cfg.model.zoo_dir), cfg.model.zoo_dir
        resized = {name for name, _ in notes}
        for layer in list(weights.layer) + list(weights.layers):
            if layer.name in resized:  # a new classifier: its filler, not the old class count's
                del layer.blobs[:]
    crop = cfg.data.crop_size
    if image_shape is not None:
        channels, h, w = image_shape
        input_shape = [1, int(channels)] + list(crop_size_of(crop, h, w))
    elif crop:
        input_shape = [1, 3, crop, crop]
    else:
        raise CaffeSetupError("%s: with no crop (data.crop_size 0) the input size is the "
                              "records' size, which is not known here" % net_path)
    shapes = {}
    for layer in net.layer:
        if layer.type in ("Data", "ImageData") and layer.top:
            shapes[layer.top[0]] = list(input_shape)
    # the notes of both phases are shown once, in the run's start-up lines (or the error)
    train = translator.translate(net, weights, phase="TRAIN", data_shapes=shapes, trainer=True,
                                 log_notes=False)
    test = translator.translate(net, weights, phase="TEST", data_shapes=shapes, log_notes=False)
    if not train.data_layers:
        raise CaffeSetupError("%s has no Data/ImageData layer in the TRAIN phase: the trainer "
                              "feeds the images through one" % net_path)
    if not train.losses:
        raise CaffeSetupError("%s has no loss layer in the TRAIN phase" % net_path)
    notes += list(dict.fromkeys(train.notes + test.notes))  # a layer of both phases: once
    findings = caffe_findings(train, cfg.solver, net_path)
    # the diagnostics' generic findings these Caffe ones already say, in Caffe's terms
    covered = {code for layer, _ in findings
               for code in (COVERS_SOLVER if layer == "solver" else COVERS_LAYER)}
    data_layer = train.data_layers[0]
    data, label = data_layer.top[0], data_layer.top[1]
    scale = data_layer.transform_param.scale
    fed = data
    if scale != 1:
        fed = data + "_unscaled"
    trained = [p for p in train.params.values() if p.lr_mult > 0 and cfg.solver.base_lr > 0]
    if not trained:
        raise CaffeSetupError(
            "%s: nothing to train: every parameter has lr_mult: 0 or base_lr is 0%s" % (
                net_path, "".join("\n  finding (%s): %s" % f for f in findings)
                + "".join("\n  %s: %s" % n for n in notes)))
    main_scores = _main_loss_scores(net, train)

    model = model_helper.ModelHelper(name=(net.name or "caffe") + "_train", init_params=True)
    proto = model.net.Proto()
    proto.external_input.extend([fed, label])
    if fed != data:
        proto.op.append(make_op("Scale", [fed], [data], scale=float(scale)))
    for op, layer in zip(train.ops, train.layer_of_op):
        op.name = layer  # findings and the network summary name Caffe layers
        proto.op.append(op)
    model.param_init_net.Proto().op.extend(p.init_op() for p in train.params.values())
    for p in trained:
        tag = ParameterTags.BIAS if p.name.endswith("_b") else ParameterTags.WEIGHT
        model.AddParameter(core.BlobReference(p.name), tag)
    loss = _total_loss(model, train.losses)
    accuracy = next((b for b in train.outputs if _top1(train, b)), None)
    if accuracy is None:
        flat = model.net.Flatten(main_scores, main_scores + "_acc_flat")
        accuracy = str(model.net.Accuracy([flat, label], "accuracy"))
    model.AddGradientOperators([loss])
    _weight_decay(model, trained, cfg.solver.weight_decay)
    deploy = _deploy_model(net, test, main_scores, fed, data, scale, input_shape, class_names)
    model.finetune = FinetuneInfo(
        deploy=deploy, is_test=False, input_kind="float", lr_mult={p.name: p.lr_mult for p in trained},
        zoo_params=[], new_params=[p.name for p in trained], boundary={}, input_blob=fed,
        label_blob=label, output_blob=main_scores, loss_blob=loss, accuracy_blob=accuracy,
        num_classes=len(class_names), class_names=list(class_names),
        frozen_blobs=[p.name for p in train.params.values()
                      if p.lr_mult == 0 and not _is_bn_state(p.name, train)])
    optimizer.reset_optimizer_instance_count()
    with core.DeviceScope(device_option):
        build_finetune_sgd(model, cfg.solver.base_lr, policy=cfg.solver.lr_policy,
                           momentum=cfg.solver.momentum, nesterov=int(cfg.solver.nesterov),
                           **C.lr_policy_args(cfg.solver))
    test_net = deploy.predict_net
    test_net.name = (net.name or "caffe") + "_test"
    for n in (model.param_init_net, model.net):
        n.Proto().device_option.CopyFrom(device_option)
    test_net.device_option.CopyFrom(device_option)
    summary = "Caffe net %s (TRAIN: %d layers -> %d ops; TEST: %d ops); weights from %s; " \
              "losses %s" % (net_path, sum(1 for l in net.layer if translator.should_include(
                  l, caffe_pb2.NetState(phase=caffe_pb2.TRAIN))), len(train.ops), len(test_net.op),
                             source, ", ".join("%s x %g" % (b, w) for b, w in train.losses))
    outputs = sorted([(b, None) for b in train.outputs] + list(train.losses))
    return dict(model=model, test=test_net, data=fed, label=label, loss=loss, accuracy=accuracy,
                probs=deploy.output_name, note=summary, outputs=outputs, covered=covered,
                test_names=_test_output_names(net, main_scores),
                notes=["%s: %s" % n for n in notes] + ["finding (%s): %s" % f for f in findings],
                frozen_blobs=model.finetune.frozen_blobs, deploy_model=deploy)


def _main_loss_scores(net, train):
    """The scores blob of the loss with the largest weight (the last of equals: GoogLeNet's
    loss3), whose softmax is the run's prediction."""
    best = None
    for layer in net.layer:
        if layer.type == "SoftmaxWithLoss" and layer.top[0] in dict(train.losses):
            weight = dict(train.losses)[layer.top[0]]
            if best is None or weight >= best[0]:
                best = (weight, layer.bottom[0])
    return best[1]


def _test_output_names(net, scores):
    """The TEST phase's own names for what the evaluation reports of the main classifier
    `scores`: its Accuracy tops (top_k 1 and 5) and its SoftmaxWithLoss top, as Caffe prints
    them ({"top1": "accuracy", "top5": "accuracy_top5", "loss": "loss"} for SqueezeNet)."""
    names = {}
    test = caffe_pb2.NetState(phase=caffe_pb2.TEST)
    for layer in net.layer:
        if not translator.should_include(layer, test) or not layer.bottom or not layer.top:
            continue
        if layer.bottom[0] != scores:
            continue
        if layer.type == "Accuracy" and layer.accuracy_param.top_k in (1, 5):
            names.setdefault("top%d" % layer.accuracy_param.top_k, layer.top[0])
        elif layer.type == "SoftmaxWithLoss":
            names.setdefault("loss", layer.top[0])
    return names


def _top1(t, blob):
    for op in t.ops:
        if op.type == "Accuracy" and blob in op.output:
            return int(ArgsToDict(op.arg).get("top_k", 1)) == 1
    return False


def _is_bn_state(name, t):
    """A BatchNorm layer's running statistics (and, training, Caffe's scale factor)."""
    return any(name in op.input[3:5] for _, op, _ in t.bn_layers) or any(
        name in op.output for op in t.ops if op.type == "CaffeBatchNormStats")


def _total_loss(model, losses):
    """Caffe's objective: the sum of every loss top times its loss_weight."""
    if len(losses) == 1 and losses[0][1] == 1.0:
        return losses[0][0]
    scaled = []
    for blob, weight in losses:
        scaled.append(str(model.net.Scale(blob, blob + "_weighted", scale=float(weight))))
    return str(model.net.Sum(scaled, "loss_total"))


def _weight_decay(model, params, weight_decay):
    """Caffe's regularisation: grad += weight_decay * decay_mult * param, per parameter."""
    if not weight_decay:
        return
    one = model.param_init_net.ConstantFill([], "caffe_decay_one", shape=[1], value=1.0)
    for p in params:
        decay = weight_decay * p.decay_mult
        if decay == 0:
            continue
        rate = model.param_init_net.ConstantFill([], p.name + "_decay", shape=[1], value=decay)
        grad = model.param_to_grad[core.BlobReference(p.name)]
        model.net.WeightedSum([grad, one, p.name, rate], grad)


def _deploy_model(net, test, scores, fed, data, scale, input_shape, class_names):
    """The TEST phase as an inference ZooModel: ops that read the label dropped, the main loss's
    softmax as the output."""
    label_blobs = {l.top[1] for l in test.data_layers if len(l.top) > 1}
    prob = scores + "_translator_autogen_softmax"
    predict = caffe2_pb2.NetDef(name=(net.name or "caffe") + "_deploy")
    if fed != data:
        predict.op.append(make_op("Scale", [fed], [data], scale=float(scale)))
    tainted = set(label_blobs)
    for op, layer in zip(test.ops, test.layer_of_op):
        if tainted.intersection(op.input):
            tainted.update(op.output)
            continue
        op.name = layer
        predict.op.append(op)
    if not any(prob in op.output for op in predict.op):
        predict.op.append(make_op("Softmax", [scores], [prob]))
    params = [p for p in test.params.values()]
    predict.external_input.extend([fed] + [p.name for p in params])
    predict.external_output.append(prob)
    init = caffe2_pb2.NetDef(name=predict.name + "_init")
    init.op.extend(p.init_op() for p in params)
    return ZooModel(init, predict, fed, list(input_shape), output_name=prob,
                    class_names=list(class_names))
