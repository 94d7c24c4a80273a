"""What the thin scripts in tools/ call: argparse namespaces -> one call each, exit codes.

Exit codes: 0 done, 1 a run failed, 2 a usage/config problem (message on stderr, no traceback),
130 interrupted by Ctrl-C after writing a checkpoint.
"""
import sys

from food101 import checkpoint as ckpt
from food101.caffe2.errors import Caffe2Error
from food101.cli import cuda_problem
from food101.data.records import RecordError
from food101.train import config as C

EXIT_INTERRUPTED = 130
INTERRUPTED_AT_START = "interrupted before training started: nothing was saved"


def _error(message, code=2):
    print("error: %s" % message, file=sys.stderr)
    return code


def config_from_args(args):
    """The Config a tools/train.py command line describes (see its --help)."""
    flags = {}
    for attr, key in (("train_lmdb", "data.train_lmdb"), ("test_lmdb", "data.test_lmdb"),
                      ("output_dir", "train.output_dir"), ("zoo_dir", "model.zoo_dir"),
                      ("max_iter", "solver.max_iter"), ("batch_size", "data.batch_size"),
                      ("base_lr", "solver.base_lr"), ("seed", "solver.random_seed")):
        value = getattr(args, attr, None)
        if value is not None:
            flags[key] = value
    if getattr(args, "bf16", False):
        flags["train.bf16"] = True
    if getattr(args, "distributed", False):
        flags["distributed.enabled"] = True
    if getattr(args, "no_progress", False):
        flags["train.progress"] = False
    if getattr(args, "verbose", False):
        flags["train.verbose"] = True
    if getattr(args, "overwrite", False):
        flags["train.overwrite"] = True
    if getattr(args, "gpu", None) is not None:
        flags.update({"solver.solver_mode": "GPU", "solver.device_id": args.gpu})
    elif getattr(args, "cpu", False):
        flags["solver.solver_mode"] = "CPU"
    base = None
    if args.resume and not args.config and not args.solver:
        state = ckpt.load_checkpoint(args.resume)
        base = C.resumed_config(state["config"], checkpoint_path=state["path"])
    cfg = C.load_config(args.config, args.solver, base=base)
    cfg = C.merge(cfg, C.parse_overrides(args.overrides), "--set")
    cfg = C.merge(cfg, flags, "command line")
    cfg = C.validate(cfg)
    if args.solver and not cfg.model.caffe_net:  # documented: a solver for the zoo model
        print("note: %s has no `net:` line: its solver settings apply to the zoo model (%s)"
              % (args.solver, cfg.model.zoo_dir or "the downloaded Model Zoo SqueezeNet, else "
                 "the seeded stand-in"), file=sys.stderr)
    asked = getattr(args, "gpu", None) is not None or "solver.solver_mode" in C.parse_overrides(
        args.overrides)
    if cfg.solver.solver_mode == "GPU" and not asked:
        # the solver (or YAML) file asks for a GPU, not this command: as a Caffe user expects,
        # the CPU then (--gpu / --set solver.solver_mode=GPU still require one)
        import torch
        if not torch.cuda.is_available():
            print("warning: %s sets solver_mode: GPU but no CUDA GPU is available "
                  "(torch.cuda.is_available() is False): training on the CPU (pass --cpu to "
                  "say so, or set solver_mode: CPU)" % (args.solver or args.config or "the config"),
                  file=sys.stderr)
            cfg = C.merge(cfg, {"solver.solver_mode": "CPU"}, "no CUDA GPU")
    return cfg


def train_main(args):
    from food101.train.loop import TrainingError, fine_tune
    try:
        cfg = config_from_args(args)
        if args.print_config:
            print(C.dump_config(cfg), end="")
            return 0
        result = fine_tune(cfg, resume=args.resume)
    except KeyboardInterrupt:  # Ctrl-C while loading the libraries or the config
        print(INTERRUPTED_AT_START, file=sys.stderr)
        return EXIT_INTERRUPTED
    except (C.ConfigError, TrainingError, ckpt.CheckpointError, FileNotFoundError, RecordError,
            Caffe2Error) as e:
        return _error(e)
    if result.get("rank", 0) != 0:  # distributed: rank 0 reports for the job
        return EXIT_INTERRUPTED if result["interrupted"] else 0
    if result["interrupted"]:
        print("interrupted: checkpoint %s" % result["checkpoint"] if result["checkpoint"]
              else INTERRUPTED_AT_START, file=sys.stderr)
        return EXIT_INTERRUPTED
    print("done: %d iterations, final smoothed loss %s, top-1 %s, top-5 %s" % (
        result["iteration"], _num(result["final_loss"]), _num(result["top1"]), _num(result["top5"])))
    print("checkpoint: %s" % result["checkpoint"])
    if result["best"].get("path"):
        print("best model: %s (top-1 %.4f at iteration %d)" % (
            result["best"]["path"], result["best"]["top1"], result["best"]["iteration"]))
    if result.get("deploy_dir"):
        print("deploy model: %s" % result["deploy_dir"])
    print("outputs: %s" % result["output_dir"])
    for warning in result.get("warnings") or ():   # e.g. the run changed no weight
        print("warning: %s" % warning, file=sys.stderr)
    for path in result.get("divergence_reports") or ():
        print("divergence report: %s (python tools/inspect_training.py %s shows it)"
              % (path, result["output_dir"]))
    if result.get("stopped_by_guard"):
        print("stopped early by the divergence guard after iteration %d (see the report); the "
              "checkpoint holds the state before the bad iteration" % result["iteration"],
              file=sys.stderr)
        return 1
    return 0


def _num(x):
    return "n/a" if x is None else "%.4f" % x


def _device(args):
    """("cuda:N" or "cpu", None) or (None, the reason --gpu cannot be used)."""
    if getattr(args, "gpu", None) is None:
        return "cpu", None
    problem = cuda_problem(args.gpu)
    return (None, problem) if problem else ("cuda:%d" % args.gpu, None)


def evaluate_main(args):
    from food101.inference.evaluate import evaluate_model, summary_lines
    device, problem = _device(args)
    if problem:
        return _error(problem)
    try:
        results = evaluate_model(args.model, args.lmdb, batch_size=args.batch_size, device=device,
                                 limit_batches=args.limit_batches, out_dir=args.out_dir,
                                 progress=not args.no_progress)
    except (ckpt.CheckpointError, FileNotFoundError, ValueError, Caffe2Error) as e:
        return _error(e)
    print("model: %s" % results["model"])
    print("lmdb: %s" % results["lmdb"])
    print("\n".join(summary_lines(results)))
    if args.out_dir:
        print("results: %s" % results["json_path"])
        print("confusion matrix: %s" % results["confusion_png"])
    return 0


def predict_main(args):
    """Predicts every readable image; each unreadable one is reported and makes the exit 1."""
    from food101.inference.predict import format_predictions, load_model, predict
    device, problem = _device(args)
    if problem:
        return _error(problem)
    try:
        model = load_model(args.model, device=device)
        errors = []
        results = predict(model, args.images, top_k=args.top_k, errors=errors)
    except (ckpt.CheckpointError, FileNotFoundError, ValueError, Caffe2Error) as e:
        return _error(e)
    if results:
        print("\n".join(format_predictions(results)))
    for path, reason in errors:
        print("error: %s: %s" % (path, reason), file=sys.stderr)
    if errors:
        print("%d of %d image(s) could not be read; the others were predicted"
              % (len(errors), len(args.images)), file=sys.stderr)
        return 1
    return 0
