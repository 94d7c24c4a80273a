"""The training configuration: one tree of documented defaults, merged from files and flags, frozen.

    defaults (this module)  ─►  YAML file  ─►  Caffe solver.prototxt  ─►  --set / flags  ─►  frozen Config
                                (any key)      (Caffe's names, mapped)     (last word)

Every key is declared once below with its default and a comment; `dump_config` writes the
comments next to the values, so the effective config written beside the checkpoints documents
itself. A key that is not declared is an error naming the key and the closest valid ones, in
every source (YAML, prototxt, `--set`). Values are coerced to the declared type when they are
merged (`"0.01"` from the command line becomes a float; a string where a number belongs is an
error naming the key).

The `solver` section uses the names of Caffe's SolverParameter, so a Caffe `solver.prototxt`
maps onto it field by field (see `CAFFE_SOLVER_FIELDS`); `lr_policy` with `gamma`, `power`,
`stepsize`, `stepvalue` and `max_iter` is turned into the arguments of the `LearningRate` op by
`lr_policy_args`, which is also what `tools/lr_schedule.py` and the tests use, so the schedule the
driver trains with is the one the op computes.
"""
import dataclasses
import difflib
import logging
import os
import random
import re
from dataclasses import dataclass, field
from typing import Tuple

import yaml

from food101.fileio import write_text
from food101.caffe2.ops.learning_rate import LR_POLICIES
from food101.config_fields import documented
from food101.data.augment import BGR_MEAN
from food101.diagnostics.settings import DiagnosticsConfig
from food101.interop.caffe import caffe_pb2, netfile


log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names the key and its source."""


_key = documented  # one documented-field helper for every section


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how a batch is made."""
    train_lmdb: str = _key("", "LMDB of TensorProtos records (uint8 CHW BGR image, int32 label) "
                               "to train on (tools/build_lmdb.py writes it)")
    test_lmdb: str = _key("", "LMDB evaluated every solver.test_interval iterations and at the end; "
                              "\"\" = no evaluation")
    classes_file: str = _key("", "class names, one a line, line i = label i; \"\" = the names stored "
                                 "in the LMDB, else models/food101/classes.txt")
    batch_size: int = _key(32, "images per forward/backward pass; one update sees "
                               "batch_size x solver.iter_size images")
    test_batch_size: int = _key(50, "images per forward pass when evaluating")
    crop_size: int = _key(227, "side of the square the net sees: a random crop when training, the "
                               "centre crop when evaluating and predicting (227 = the zoo's input); "
                               "0 = no crop, the whole record (Caffe's transform_param without "
                               "crop_size, what a --solver net without one gets)")
    mirror: bool = _key(True, "flip training crops horizontally at random (p = 0.5)")
    mean: Tuple[float, ...] = _key(BGR_MEAN,
                                   "per-channel BGR mean subtracted from every image (the Model Zoo "
                                   "SqueezeNet's preprocessing); one value = the same for every "
                                   "channel ([0] = none: a --solver net without mean_value/mean_file)")
    mean_file: str = _key("", "a Caffe mean image (binaryproto, C x H x W of the records' size) "
                              "subtracted pixel by pixel instead of data.mean, as Caffe's "
                              "transform_param mean_file: the mean at each pixel's source "
                              "position, cropped and mirrored with the image; also used when "
                              "evaluating and by the exported model; \"\" = data.mean")
    shuffle: bool = _key(True, "shuffle the training records every epoch (reproducible from "
                               "solver.random_seed; the position is saved in checkpoints)")
    device_resident: bool = _key(False, "keep the whole uint8 training set in device memory (GPU: "
                                        "~15 GB for Food-101 at 256 px); batches are then cut on "
                                        "the device with no host reads")


@dataclass(frozen=True)
class ModelConfig:
    """The Model Zoo network and what is fine-tuned."""
    zoo_dir: str = _key("", "folder holding the zoo's predict_net.pb and init_net.pb; \"\" = the "
                            "downloaded SqueezeNet, else the seeded stand-in shipped for tests")
    caffe_net: str = _key("", "a Caffe train_val.prototxt to train instead of a zoo model (a "
                              "solver's `net:` line sets it): its TRAIN and TEST phases, losses, "
                              "lr_mult/decay_mult and fillers, with zoo_dir's weights if given")
    num_classes: int = _key(0, "outputs of the new classifier; 0 = the train LMDB's class count "
                               "(its builder metadata or data.classes_file; Food-101 has 101)")
    freeze_up_to: str = _key("", "last blob of the frozen backbone: zoo layers up to it keep their "
                                 "weights, layers after it are trained (\"\" with unfreeze_from "
                                 "\"\" = train only the new classifier, i.e. \"fire9/concat\")")
    unfreeze_from: str = _key("", "the other way to say it: train the zoo layers from this one up "
                                  "(\"fire9\" = fire9 + classifier; \"conv1\" = everything); give "
                                  "freeze_up_to or unfreeze_from, not both")
    weight_init: str = _key("gaussian", "initialisation of the new classifier's weights: gaussian "
                                        "(std 0.01, SqueezeNet's own conv10 filler) | msra | xavier")
    bias_init: float = _key(0.0, "initial value of the new classifier's bias; a small positive "
                                 "value keeps SqueezeNet's ReLU after conv10 from starting dead "
                                 "for some classes on features that do not suit them yet")
    new_lr_mult: float = _key(1.0, "learning-rate multiplier of the new classifier's parameters "
                                   "(Caffe's lr_mult; > 0)")
    backbone_lr_mult: float = _key(1.0, "learning-rate multiplier of the zoo layers that are trained "
                                        "(see unfreeze_from); 0.1 is a common choice; > 0")
    train_dropout: bool = _key(True, "the zoo's Dropout (drop9, ratio 0.5) is active while training")


@dataclass(frozen=True)
class SolverConfig:
    """Caffe's SolverParameter fields (same names), as a solver.prototxt gives them."""
    base_lr: float = _key(0.01, "learning rate at iteration 0, before lr_policy and lr multipliers")
    lr_policy: str = _key("step", "fixed | step | multistep | exp | inv | poly | sigmoid (Caffe's "
                                  "policies; tools/lr_schedule.py prints and plots any of them)")
    gamma: float = _key(0.1, "step/multistep: factor per step; exp: lr = base_lr * gamma^iter; inv: "
                             "base_lr * (1 + gamma * iter)^-power; sigmoid: slope")
    power: float = _key(1.0, "inv and poly: the exponent")
    stepsize: int = _key(2000, "step: iterations per gamma step; sigmoid: the centre iteration")
    stepvalue: Tuple[int, ...] = _key((), "multistep: the iterations at which lr is multiplied by "
                                          "gamma (increasing)")
    max_iter: int = _key(4000, "iterations (weight updates) to train; poly decays to 0 at max_iter")
    lr_numbering: str = _key("caffe2", "which iteration a weight update's rate is computed at: "
                                       "caffe2 = update i uses the policy at i (Caffe2's build_sgd "
                                       "increments the counter before LearningRate; poly's last "
                                       "update gets 0) | caffe = at i - 1, as Caffe's SGDSolver "
                                       "(step boundaries one update later); a solver.prototxt "
                                       "sets caffe")
    momentum: float = _key(0.9, "SGD momentum (0 = plain SGD)")
    nesterov: bool = _key(True, "Nesterov momentum, Caffe2's build_sgd default (a prototxt's "
                                "type: \"SGD\" sets false, type: \"Nesterov\" true)")
    weight_decay: float = _key(0.0005, "L2 weight decay added to the gradients of trained weights "
                                       "(not biases, as Caffe2's add_weight_decay)")
    iter_size: int = _key(1, "forward/backward passes whose gradients are averaged into one update "
                             "(gradient accumulation: batch_size x iter_size images per update)")
    test_iter: int = _key(0, "test batches per periodic evaluation; 0 = the whole data.test_lmdb "
                             "(the final evaluation always reads all of it)")
    test_interval: int = _key(500, "evaluate every this many iterations (0 = only at the end)")
    test_initialization: bool = _key(False, "also evaluate before the first iteration")
    display: int = _key(20, "log a Caffe-style line every this many iterations (0 = never)")
    average_loss: int = _key(20, "the logged loss is the mean over this many last iterations")
    snapshot: int = _key(1000, "write a checkpoint every this many iterations (0 = only at the end)")
    snapshot_prefix: str = _key("snapshots/squeezenet_food101",
                                "checkpoint path prefix (<prefix>_iter_<N>.ckpt); relative to "
                                "train.output_dir; left at this default, it names the model "
                                "trained: snapshots/<model>_food101 (an .onnx file's stem, a "
                                "Caffe net's name, a zoo predict net's name)")
    solver_mode: str = _key("CPU", "CPU or GPU (--gpu/--cpu set it)")
    device_id: int = _key(0, "CUDA device index in GPU mode")
    random_seed: int = _key(-1, "seed of every RNG (init, shuffling, augmentation, dropout); -1 = "
                                "draw one, which is written to the effective config")


@dataclass(frozen=True)
class TrainConfig:
    """What the driver writes and how it runs."""
    output_dir: str = _key("runs/food101_squeezenet",
                           "folder for the log, metrics.jsonl, plots, config, deploy model and "
                           "(by default) snapshots")
    bf16: bool = _key(False, "run forward and backward under bfloat16 autocast (master weights and "
                             "the update stay float32)")
    compile: bool = _key(False, "run the nets as torch.compile'd graphs (faster on a GPU; the first "
                                "iterations compile)")
    progress: bool = _key(True, "show a tqdm progress bar (only when stderr is a terminal)")
    plots: bool = _key(True, "write loss, accuracy, lr and confusion-matrix PNGs at the end")
    export: bool = _key(True, "export the trained model to the Caffe2 deploy format "
                              "(<output_dir>/deploy) at the end")
    verbose: bool = _key(False, "print the per-blob statistics tables on the console too (they "
                                "always go to train.log and metrics.jsonl; --verbose)")
    overwrite: bool = _key(False, "train into an output_dir that already holds a run: clear it "
                                  "first (--overwrite); without it a used folder is refused "
                                  "unless resuming")


@dataclass(frozen=True)
class DistributedConfig:
    """Data-parallel training, one process per device under torchrun (food101.train.distributed)."""
    enabled: bool = _key(False, "train data-parallel: run under torchrun, one process per device, "
                                "gradients all-reduced, the LMDB sharded by rank (--distributed)")
    backend: str = _key("", "torch.distributed backend; \"\" = NCCL for GPUs (Gloo for CPU blobs), "
                            "Gloo on the CPU")
    timeout_s: float = _key(600.0, "seconds a collective waits for a silent rank before the job "
                                   "fails; must exceed the longest rank-0-only phase (evaluation, "
                                   "checkpoint)")
    lr_scaling: str = _key("linear", "linear: lr = solver.base_lr x images per update / "
                                     "reference_batch (Goyal et al. 2017) | none")
    reference_batch: int = _key(0, "the batch solver.base_lr was tuned for; 0 = one rank's "
                                   "data.batch_size x solver.iter_size, so lr scales with the ranks")
    warmup_iters: int = _key(100, "updates over which a scaled lr ramps up linearly from "
                                  "warmup_start_multiplier x lr (0 = no warm-up)")
    warmup_start_multiplier: float = _key(-1.0, "where the warm-up starts, as a fraction of the "
                                                "scaled lr; -1 = 1 / scale (the unscaled base_lr)")
    bn_stats: str = _key("average", "running statistics of SpatialBN layers that train: average "
                                    "(mean over ranks every update) | broadcast (rank 0's) | local")
    bucket_cap_mb: float = _key(25.0, "size in MB of the buckets gradients are packed into for "
                                      "the all-reduce")


@dataclass(frozen=True)
class Config:
    """The whole tree; `solver` carries Caffe's names."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)


SECTIONS = tuple(f.name for f in dataclasses.fields(Config))


def default_config():
    return Config()


def all_keys():
    """Every valid dotted key ('solver.base_lr', ...) in declaration order."""
    return ["%s.%s" % (s, f.name) for s in SECTIONS
            for f in dataclasses.fields(getattr(Config, "__dataclass_fields__")[s].default_factory)]


def key_doc(dotted):
    section, name = dotted.split(".", 1)
    cls = Config.__dataclass_fields__[section].default_factory
    return cls.__dataclass_fields__[name].metadata["doc"]


def _suggest(dotted, keys):
    """' ; did you mean ...?' for an unknown key: the keys whose last part is closest to its last
    part (so a key put in the wrong section is found too)."""
    leaf = dotted.rsplit(".", 1)[-1]
    scored = sorted(((difflib.SequenceMatcher(None, leaf, k.rsplit(".", 1)[-1]).ratio(), k) for k in keys),
                    key=lambda t: -t[0])
    hints = [k for score, k in scored if score >= 0.6][:3]
    return "; did you mean %s?" % " or ".join(hints) if hints else ""


# ------------------------------------------------------------------------------------------
# Coercion of one value to a declared type
# ------------------------------------------------------------------------------------------
def _coerce(value, type_, where):
    origin = getattr(type_, "__origin__", None)
    if origin is tuple:
        item_type = type_.__args__[0]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, str):
            value = [v for v in re.split(r"[,\s]+", value.strip("[]() ")) if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError("%s: expected a list of %s, got %r" % (where, item_type.__name__, value))
        return tuple(_coerce(v, item_type, where) for v in value)
    if origin is not None and type(None) in getattr(type_, "__args__", ()):  # Optional[T]
        if value is None:
            return None
        return _coerce(value, type_.__args__[0], where)
    if type_ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ConfigError("%s: expected true or false, got %r" % (where, value))
    if type_ is int:
        if isinstance(value, bool):
            raise ConfigError("%s: expected an integer, got %r" % (where, value))
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError("%s: expected an integer, got %r" % (where, value))
    if type_ is float:
        if isinstance(value, bool):
            raise ConfigError("%s: expected a number, got %r" % (where, value))
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError("%s: expected a number, got %r" % (where, value))
    if type_ is str:
        if value is None:
            return ""
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError("%s: expected a string, got %r" % (where, value))
    raise ConfigError("%s: unsupported type %r" % (where, type_))


# ------------------------------------------------------------------------------------------
# Merging
# ------------------------------------------------------------------------------------------
def merge(cfg, updates, source="overrides"):
    """A new Config with `updates` applied: a nested dict {section: {key: value}} or a flat one
    {"section.key": value}. Unknown sections/keys raise ConfigError naming them and `source`."""
    flat = {}
    if not isinstance(updates, dict):
        raise ConfigError("%s: expected a mapping of sections (%s), got %s"
                          % (source, ", ".join(SECTIONS), type(updates).__name__))
    for top, value in updates.items():
        if "." in str(top):
            flat[str(top)] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                flat["%s.%s" % (top, k)] = v
        elif top in SECTIONS:
            raise ConfigError("%s: section %r must be a mapping of keys, got %r" % (source, top, value))
        else:
            flat[str(top)] = value
    keys = all_keys()
    per_section = {s: {} for s in SECTIONS}
    for dotted, value in flat.items():
        if dotted not in keys:
            raise ConfigError("%s: unknown config key %r%s (valid sections: %s)"
                              % (source, dotted, _suggest(dotted, keys), ", ".join(SECTIONS)))
        section, name = dotted.split(".", 1)
        sec_cls = type(getattr(cfg, section))
        type_ = _field_types(sec_cls)[name]
        per_section[section][name] = _coerce(value, type_, "%s: %s" % (source, dotted))
    return dataclasses.replace(cfg, **{s: dataclasses.replace(getattr(cfg, s), **kv)
                                       for s, kv in per_section.items() if kv})


def _field_types(cls):
    import typing
    return typing.get_type_hints(cls)


def to_dict(cfg):
    """Plain nested dict (lists for tuples), as YAML and checkpoints store it."""
    out = {}
    for s in SECTIONS:
        sec = getattr(cfg, s)
        out[s] = {f.name: list(v) if isinstance(v, tuple) else v
                  for f in dataclasses.fields(sec) for v in [getattr(sec, f.name)]}
    return out


def from_dict(d, source="dict"):
    return merge(default_config(), d, source)


def get(cfg, dotted):
    section, name = dotted.split(".", 1)
    return getattr(getattr(cfg, section), name)


# ------------------------------------------------------------------------------------------
# YAML
# ------------------------------------------------------------------------------------------
def read_config_text(path, kind):
    """The text of a config file; a ConfigError naming it when it is missing or not UTF-8."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConfigError("%s: no such %s file" % (path, kind)) from None
    except OSError as e:
        raise ConfigError("%s: cannot read the %s file (%s)" % (path, kind, e.strerror or e)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError("%s: not a %s text file: byte 0x%02x at offset %d is not UTF-8 (a "
                          "damaged or binary file?)" % (path, kind, data[e.start], e.start)) from None


def load_yaml(path):
    text = read_config_text(path, "YAML config")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError("%s: not valid YAML: %s" % (path, e)) from None
    return data or {}


def dump_config(cfg, path=None, header=None):
    """YAML text of `cfg` with each key's comment above it; written to `path` when given."""
    lines = []
    if header:
        lines += ["# " + h for h in header.splitlines()]
    for s in SECTIONS:
        sec = getattr(cfg, s)
        doc = (type(sec).__doc__ or "").strip()
        lines.append("")
        lines.append("%s:%s" % (s, "  # " + doc if doc else ""))
        for f in dataclasses.fields(sec):
            value = getattr(sec, f.name)
            if isinstance(value, tuple):
                value = list(value)
            text = yaml.safe_dump({f.name: value}, default_flow_style=True, width=1000).strip()
            text = text[1:-1] if text.startswith("{") else text  # {key: v} -> key: v
            lines.append("  # " + f.metadata["doc"])
            lines.append("  " + text)
    text = "\n".join(lines).lstrip("\n") + "\n"
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write_text(path, text)
    return text


# ------------------------------------------------------------------------------------------
# Caffe solver.prototxt
# ------------------------------------------------------------------------------------------
# Caffe SolverParameter field -> config key. `stepvalue` and `test_iter` are repeated in Caffe.
CAFFE_SOLVER_FIELDS = {
    "base_lr": "solver.base_lr",
    "lr_policy": "solver.lr_policy",
    "gamma": "solver.gamma",
    "power": "solver.power",
    "stepsize": "solver.stepsize",
    "stepvalue": "solver.stepvalue",
    "max_iter": "solver.max_iter",
    "momentum": "solver.momentum",
    "weight_decay": "solver.weight_decay",
    "iter_size": "solver.iter_size",
    "test_iter": "solver.test_iter",
    "test_interval": "solver.test_interval",
    "test_initialization": "solver.test_initialization",
    "display": "solver.display",
    "average_loss": "solver.average_loss",
    "snapshot": "solver.snapshot",
    "snapshot_prefix": "solver.snapshot_prefix",
    "solver_mode": "solver.solver_mode",
    "device_id": "solver.device_id",
    "random_seed": "solver.random_seed",
    "type": "solver.nesterov",            # "SGD" -> false, "Nesterov" -> true
    "solver_type": "solver.nesterov",     # Caffe's deprecated enum spelling (SGD / NESTEROV)
    "regularization_type": None,          # only "L2" is accepted (what weight_decay does)
}
# SolverParameter fields that change nothing in how this driver trains: ignored with a warning
# saying what is done instead (others, e.g. clip_gradients, would change the run: refused).
CAFFE_SOLVER_IGNORED = {
    "snapshot_format": "checkpoints are this project's .ckpt files (the deploy folder holds the "
                       "Caffe2 model; tools/export.py writes Caffe2 and ONNX)",
    "debug_info": "per-blob statistics always go to train.log and metrics.jsonl (--verbose prints "
                  "them too)",
    "snapshot_after_train": "a checkpoint is always written at the end",
    "test_compute_loss": "evaluation reports top-1/top-5 accuracy",
    "layer_wise_reduce": "distributed runs all-reduce gradients in buckets "
                         "(distributed.bucket_cap_mb)",
}
# SolverParameter fields that name the net(s): `net` (a train_val.prototxt with TRAIN and TEST
# phases) is followed (model.caffe_net); the others describe Caffe-only setups.
_CAFFE_NET_FIELDS = ("net", "net_param", "train_net", "test_net", "train_net_param", "test_net_param",
                     "train_state", "test_state")


def read_solver(path):
    """A Caffe solver.prototxt -> caffe_pb2.SolverParameter (protobuf text_format with the
    project's Caffe schema); an unknown field names the closest valid ones; a net prototxt
    given as the solver is named as such."""
    try:
        return netfile.read_solver(path)
    except netfile.CaffeFormatError as e:
        text = str(e)
        match = re.search(r"field '(\w+)' is not in SolverParameter", text)
        if match and _is_net_file(path):
            raise ConfigError("%s is a Caffe net (a train_val or deploy prototxt with `layer` "
                              "entries), not a solver: pass the solver.prototxt whose `net:` line "
                              "names it as --solver, or write one (net: \"%s\", base_lr, "
                              "lr_policy, max_iter, ...)" % (path, os.path.basename(path))) from None
        if match:
            raise ConfigError("%s: unknown solver field %r%s" % (path, match.group(1),
                                                                  _suggest_field(match.group(1)))) from None
        raise ConfigError(text) from None


def _is_net_file(path):
    """True when `path` reads as a Caffe NetParameter with layers."""
    try:
        return bool(netfile.read_net(path).layer)
    except netfile.CaffeFormatError:
        return False


def solver_updates(solver, path="<solver.prototxt>"):
    """A SolverParameter -> flat {"solver.key": value} updates for `merge` (only the fields the
    file sets), plus {"model.caffe_net": path} for a `net:` line (resolved by `resolve_net`)."""
    updates = {}
    for field, value in solver.ListFields():
        name = field.name
        if name == "net":
            updates["model.caffe_net"] = resolve_net(value, path)
            continue
        if name in _CAFFE_NET_FIELDS:
            raise ConfigError("%s: field %r is not supported: give the net as `net: "
                              "\"train_val.prototxt\"` (TRAIN and TEST phases in one file)"
                              % (path, name))
        if name in CAFFE_SOLVER_IGNORED:
            log.warning("%s: solver field %r is ignored: %s", path, name, CAFFE_SOLVER_IGNORED[name])
            continue
        if name not in CAFFE_SOLVER_FIELDS:
            raise ConfigError("%s: solver field %r is valid Caffe but not supported by this "
                              "driver; remove it (supported: %s)" % (path, name,
                                                                   ", ".join(CAFFE_SOLVER_FIELDS)))
        if field.enum_type is not None:
            value = field.enum_type.values_by_number[value].name
        if name == "test_iter":
            if len(value) > 1:
                raise ConfigError("%s: test_iter is given %d times (one per Caffe test net); this "
                                  "driver has one test net, give one" % (path, len(value)))
            value = value[0]
        elif name == "stepvalue":
            value = list(value)
        if name in ("type", "solver_type"):
            kind = str(value).upper()
            if kind not in ("SGD", "NESTEROV"):
                raise ConfigError("%s: %s: %r is not supported; use \"SGD\" (momentum) or \"Nesterov\""
                                  % (path, name, value))
            value = kind == "NESTEROV"
        elif name == "regularization_type":
            if str(value).upper() != "L2":
                raise ConfigError("%s: regularization_type %r is not supported; only \"L2\" "
                                  "(weight_decay) is" % (path, value))
            continue
        elif name == "solver_mode":
            value = str(value).upper()
        elif isinstance(value, float):
            value = float("%.7g" % value)  # a float field read back as written (0.04, not 0.0399..)
        updates[CAFFE_SOLVER_FIELDS[name]] = value
    return updates


def resolve_net(net, solver_path):
    """The solver's `net:` path as Caffe users mean it: absolute; else relative to the working
    directory (Caffe's rule: `caffe train` runs from the repository root); else relative to the
    solver file; else, the file of that name beside the solver (a solver and net copied out of
    a Caffe tree, e.g. "models/x/train_val.prototxt" -> ./train_val.prototxt)."""
    if os.path.isabs(net):
        candidates = [net]
    else:
        folder = os.path.dirname(os.path.abspath(solver_path))
        candidates = [os.path.abspath(net), os.path.join(folder, net),
                      os.path.join(folder, os.path.basename(net))]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise ConfigError("%s: net %r not found (looked at %s)" % (solver_path, net, ", ".join(
        dict.fromkeys(candidates))))


def _suggest_field(name):
    hints = difflib.get_close_matches(name, list(CAFFE_SOLVER_FIELDS) + list(_CAFFE_NET_FIELDS),
                                      n=3, cutoff=0.6)
    return "; did you mean %s?" % " or ".join(hints) if hints else (
        " (supported: %s)" % ", ".join(CAFFE_SOLVER_FIELDS))


def load_solver_prototxt(path):
    updates = solver_updates(read_solver(path), path)
    # the rates follow Caffe's numbering: the solver was written (and its steps placed) for it
    updates["solver.lr_numbering"] = "caffe"
    if "model.caffe_net" in updates:
        if "solver.nesterov" not in updates:  # Caffe's default solver type is SGD
            updates["solver.nesterov"] = False
        updates.update(caffe_data_updates(updates["model.caffe_net"]))
    return updates


def caffe_data_updates(net_path):
    """data.* keys from a Caffe net's Data/ImageData layers: TRAIN and TEST batch sizes, the
    TRAIN transform_param with Caffe's defaults where a field is absent (crop_size 0 = no crop,
    the whole record; no mean_value/mean_file = nothing subtracted; mirror false), and the
    LMDB `source` paths, made absolute (found from the working directory or beside the net
    file) so that a saved config resumes from anywhere; --train-lmdb / --set override."""
    net = netfile.read_net(net_path, dropped=[])  # fork fields: the run's start-up lines say them
    updates = {}
    for layer in net.layer:
        if layer.type not in ("Data", "ImageData"):
            continue
        phases = {rule.phase for rule in layer.include if rule.HasField("phase")} or {
            caffe_pb2.TRAIN, caffe_pb2.TEST}
        param = layer.data_param if layer.type == "Data" else layer.image_data_param
        source = _net_relative(param.source, net_path) if param.source else param.source
        if caffe_pb2.TRAIN in phases:
            t = layer.transform_param
            if param.batch_size:
                updates["data.batch_size"] = param.batch_size
            # Caffe's DataTransformer defaults, not the zoo's 227 crop and BGR mean
            updates["data.crop_size"] = t.crop_size
            if t.mean_value:  # one value is every channel's, as in Caffe
                updates["data.mean"] = [float(v) for v in t.mean_value]
            elif t.mean_file:  # Caffe refuses mean_file and mean_value together
                updates["data.mean_file"] = _net_relative(t.mean_file, net_path)
            else:
                updates["data.mean"] = [0.0]
            updates["data.mirror"] = bool(t.mirror)
            if source and layer.type == "Data":
                updates["data.train_lmdb"] = source
        if caffe_pb2.TEST in phases and caffe_pb2.TRAIN not in phases:
            if param.batch_size:
                updates["data.test_batch_size"] = param.batch_size
            if source and layer.type == "Data":
                updates["data.test_lmdb"] = source
    return updates


def _net_relative(path, net_path):
    """A file a Caffe net names, as an absolute path: relative to cwd (as Caffe reads it) when
    it exists there, else beside the net file when it exists there, else cwd's (the error
    names both places: `caffe_source_places`)."""
    beside = os.path.join(os.path.dirname(os.path.abspath(net_path)), path)
    return beside if not os.path.exists(path) and os.path.exists(beside) else os.path.abspath(path)


def caffe_source_places(net_path, path):
    """Where a missing file a Caffe net names was looked for: (layer, field, [places]) of the
    layer whose `source` or `mean_file` became `path`, or None."""
    for layer in netfile.read_net(net_path).layer:
        param = layer.data_param if layer.type == "Data" else layer.image_data_param
        for field, value in (("source", param.source if layer.type in ("Data", "ImageData") else ""),
                             ("transform_param.mean_file", layer.transform_param.mean_file)):
            if value and _net_relative(value, net_path) == path:
                folder = os.path.dirname(os.path.abspath(net_path))
                return layer.name, field, list(dict.fromkeys(
                    [os.path.abspath(value), os.path.join(folder, value)]))
    return None


# ------------------------------------------------------------------------------------------
# Command-line overrides
# ------------------------------------------------------------------------------------------
def parse_overrides(items):
    """["solver.base_lr=0.01", "data.mean=[104,117,123]"] -> {"solver.base_lr": 0.01, ...}.

    Values are read as YAML scalars/lists, so numbers, booleans and lists need no quoting."""
    out = {}
    for item in items or ():
        if "=" not in item:
            raise ConfigError("--set %r: expected KEY=VALUE (for example solver.base_lr=0.01)" % item)
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        out[key.strip()] = value
    return out


# ------------------------------------------------------------------------------------------
# The whole load, and checks across keys
# ------------------------------------------------------------------------------------------
def load_config(yaml_path=None, solver_path=None, overrides=None, base=None):
    """defaults (or `base`) -> YAML -> solver.prototxt -> overrides -> validated frozen Config.

    overrides: a dict ({"solver.base_lr": 0.01} or nested) or a list of "key=value" strings."""
    cfg = base if base is not None else default_config()
    if yaml_path:
        cfg = merge(cfg, load_yaml(yaml_path), yaml_path)
    if solver_path:
        cfg = merge(cfg, load_solver_prototxt(solver_path), solver_path)
    if overrides:
        if not isinstance(overrides, dict):
            overrides = parse_overrides(overrides)
        cfg = merge(cfg, overrides, "command line")
    validate(cfg)
    return cfg


DEFAULT_SNAPSHOT_PREFIX = SolverConfig.__dataclass_fields__["snapshot_prefix"].default


def resolve_snapshot_prefix(cfg, model_name):
    """A Config whose snapshot_prefix names the model (`model_name`, e.g. from
    interop.backbone.backbone_name) when it was left at the default; a prefix the user or a
    Caffe solver gave stays."""
    if cfg.solver.snapshot_prefix != DEFAULT_SNAPSHOT_PREFIX:
        return cfg
    prefix = "snapshots/%s_food101" % model_name
    if prefix == cfg.solver.snapshot_prefix:
        return cfg
    return merge(cfg, {"solver.snapshot_prefix": prefix}, "the model's name")


def resolve_seed(cfg):
    """A Config whose random_seed is concrete (-1 draws one from the OS)."""
    if cfg.solver.random_seed >= 0:
        return cfg
    return merge(cfg, {"solver.random_seed": random.SystemRandom().randrange(2 ** 31)}, "random_seed")


# Caffe's lr_policy -> the solver fields that become its LearningRate op arguments (same names).
# The policies are the op's own (LR_POLICIES); this table only says which fields each one reads.
_CAFFE_POLICY_FIELDS = {
    "fixed": (), "step": ("stepsize", "gamma"), "multistep": ("stepvalue", "gamma"),
    "exp": ("gamma",), "inv": ("gamma", "power"), "poly": ("power", "max_iter"),
    "sigmoid": ("gamma", "stepsize"),
}
CAFFE_LR_POLICIES = tuple(_CAFFE_POLICY_FIELDS)
assert set(CAFFE_LR_POLICIES) <= set(LR_POLICIES), "a Caffe lr_policy the LearningRate op lacks"


def lr_policy_args(solver):
    """The `LearningRate` op arguments (besides base_lr) for `solver`'s Caffe lr_policy."""
    if solver.lr_policy not in _CAFFE_POLICY_FIELDS:
        raise ConfigError("solver.lr_policy: unknown policy %r; valid: %s"
                          % (solver.lr_policy, ", ".join(CAFFE_LR_POLICIES)))
    args = {name: getattr(solver, name) for name in _CAFFE_POLICY_FIELDS[solver.lr_policy]}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}


def lr_iteration(solver, update):
    """The iteration the LearningRate policy is evaluated at for weight update `update`
    (1-based): `update` with Caffe2's numbering, update - 1 with Caffe's (solver.lr_numbering).

    >>> lr_iteration(SolverConfig(lr_numbering="caffe"), 1)
    0
    """
    return update - 1 if solver.lr_numbering == "caffe" else update


def resumed_config(saved, cfg=None, checkpoint_path=None):
    """The config of a run resumed from a checkpoint whose config dict is `saved`: `cfg` when
    one is given (its unset random_seed, -1, takes the checkpoint's, so the random streams
    continue), else the checkpoint's own - whose output_dir becomes the run folder the
    checkpoint (at `checkpoint_path`) is in now, so a moved or copied run continues in place."""
    if cfg is None:
        cfg = from_dict(saved, "checkpoint config")
        if checkpoint_path is not None:
            cfg = merge(cfg, {"train.output_dir": run_folder_of(checkpoint_path, cfg)}, "checkpoint")
        return cfg
    seed = (saved or {}).get("solver", {}).get("random_seed", -1)
    if cfg.solver.random_seed < 0 and seed >= 0:
        return merge(cfg, {"solver.random_seed": seed}, "checkpoint seed")
    return cfg


def validate(cfg):
    """Checks across keys; raises ConfigError naming the key."""
    s, d, m, dist = cfg.solver, cfg.data, cfg.model, cfg.distributed
    if s.lr_policy not in CAFFE_LR_POLICIES:
        hint = difflib.get_close_matches(s.lr_policy, CAFFE_LR_POLICIES, n=2)
        raise ConfigError("solver.lr_policy: unknown policy %r%s; valid: %s" % (
            s.lr_policy, " (did you mean %s?)" % " or ".join(hint) if hint else "",
            ", ".join(CAFFE_LR_POLICIES)))
    checks = [
        (s.base_lr >= 0, "solver.base_lr must be >= 0, got %r (0 is legal Caffe: nothing is "
                         "updated)" % s.base_lr),
        (s.max_iter >= 1, "solver.max_iter must be >= 1, got %r" % s.max_iter),
        (s.lr_numbering in ("caffe2", "caffe"),
         "solver.lr_numbering must be caffe2 or caffe, got %r" % s.lr_numbering),
        (s.iter_size >= 1, "solver.iter_size must be >= 1, got %r" % s.iter_size),
        (0 <= s.momentum < 1, "solver.momentum must be in [0, 1), got %r" % s.momentum),
        (s.weight_decay >= 0, "solver.weight_decay must be >= 0, got %r" % s.weight_decay),
        (s.lr_policy != "step" or s.stepsize > 0,
         "solver.stepsize must be > 0 for lr_policy step, got %r" % s.stepsize),
        (s.lr_policy != "sigmoid" or s.stepsize >= 0,
         "solver.stepsize must be >= 0 for lr_policy sigmoid, got %r" % s.stepsize),
        (s.lr_policy != "multistep" or len(s.stepvalue) > 0,
         "solver.stepvalue must list the step iterations for lr_policy multistep"),
        (list(s.stepvalue) == sorted(set(s.stepvalue)),
         "solver.stepvalue must be strictly increasing, got %r" % (list(s.stepvalue),)),
        (s.solver_mode in ("CPU", "GPU"), "solver.solver_mode must be CPU or GPU, got %r" % s.solver_mode),
        (s.device_id >= 0, "solver.device_id must be >= 0, got %r" % s.device_id),
        (s.average_loss >= 1, "solver.average_loss must be >= 1, got %r" % s.average_loss),
        (min(s.test_iter, s.test_interval, s.display, s.snapshot) >= 0,
         "solver.test_iter/test_interval/display/snapshot must be >= 0"),
        (d.batch_size >= 1, "data.batch_size must be >= 1, got %r" % d.batch_size),
        (d.test_batch_size >= 1, "data.test_batch_size must be >= 1, got %r" % d.test_batch_size),
        (d.crop_size >= 0, "data.crop_size must be >= 1, or 0 for no crop (the whole image), got %r"
         % d.crop_size),
        (len(d.mean) in (1, 3), "data.mean must have 1 value (every channel) or 3 (BGR), got %r"
         % (list(d.mean),)),
        (m.num_classes == 0 or m.num_classes >= 2,
         "model.num_classes must be 0 (the LMDB's class count) or >= 2, got %r" % m.num_classes),
        (m.new_lr_mult > 0 and m.backbone_lr_mult > 0,
         "model.new_lr_mult and model.backbone_lr_mult must be > 0 (freeze a layer instead of a 0 "
         "multiplier), got %r and %r" % (m.new_lr_mult, m.backbone_lr_mult)),
        (not (m.freeze_up_to and m.unfreeze_from),
         "give model.freeze_up_to or model.unfreeze_from, not both (got %r and %r)"
         % (m.freeze_up_to, m.unfreeze_from)),
        (m.weight_init in ("msra", "xavier", "gaussian"),
         "model.weight_init must be msra, xavier or gaussian, got %r" % m.weight_init),
        (dist.lr_scaling in ("linear", "none"),
         "distributed.lr_scaling must be linear or none, got %r" % dist.lr_scaling),
        (dist.bn_stats in ("average", "broadcast", "local"),
         "distributed.bn_stats must be average, broadcast or local, got %r" % dist.bn_stats),
        (dist.timeout_s > 0, "distributed.timeout_s must be > 0, got %r" % dist.timeout_s),
        (min(dist.reference_batch, dist.warmup_iters) >= 0,
         "distributed.reference_batch and warmup_iters must be >= 0"),
        (dist.bucket_cap_mb > 0, "distributed.bucket_cap_mb must be > 0, got %r" % dist.bucket_cap_mb),
        (dist.backend in ("", "gloo", "nccl", "cpu:gloo,cuda:nccl"),
         "distributed.backend must be \"\", gloo, nccl or cpu:gloo,cuda:nccl, got %r" % dist.backend),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return cfg


def run_folder_of(checkpoint_path, cfg):
    """The output folder of the run a checkpoint belongs to, where it is now: its folder less
    the relative folder of cfg's snapshot_prefix (runs/x/snapshots/a_iter_5.ckpt with prefix
    snapshots/a -> runs/x); cfg's train.output_dir when the prefix is absolute."""
    prefix = cfg.solver.snapshot_prefix
    if os.path.isabs(prefix):
        return cfg.train.output_dir
    folder = os.path.dirname(os.path.abspath(checkpoint_path))
    for part in os.path.normpath(os.path.dirname(prefix)).split(os.sep):
        if part not in ("", "."):
            folder = os.path.dirname(folder)
    return folder


def snapshot_prefix(cfg):
    prefix = cfg.solver.snapshot_prefix
    return prefix if os.path.isabs(prefix) else os.path.join(cfg.train.output_dir, prefix)


# ------------------------------------------------------------------------------------------
# configs/food101_squeezenet.yaml is documented_defaults() (a test checks it); regenerate with
#   python -c "from food101.train.config import documented_defaults as d; print(d(), end='')" \
#       > configs/food101_squeezenet.yaml
# ------------------------------------------------------------------------------------------
DEFAULTS_HEADER = """Fine-tuning the Caffe2 Model Zoo SqueezeNet on ETH Food-101: the documented default config.

Every key the driver knows is listed here with its default and what it does; a key that is not
listed is an error. Load it with `tools/train.py --config configs/food101_squeezenet.yaml`,
optionally with `--solver solver.prototxt` (Caffe's names, merged over this file) and
`--set section.key=value` (merged last). The effective config of a run is written next to its
checkpoints in this same format."""
SHIPPED_DATA = {"data.train_lmdb": "data/food101_train_lmdb", "data.test_lmdb": "data/food101_test_lmdb"}


def documented_defaults():
    """The text of configs/food101_squeezenet.yaml: every default, with the LMDB paths that
    tools/build_lmdb.py's documentation uses."""
    return dump_config(merge(default_config(), SHIPPED_DATA, "shipped config"), header=DEFAULTS_HEADER)
