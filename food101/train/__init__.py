"""Training: the solver config, the loop, checkpoints, metrics, evaluation, plots, prediction.

    from food101 import train
    cfg = train.load_config("configs/food101_squeezenet.yaml", overrides=["solver.max_iter=100"])
    result = train.fine_tune(cfg)                  # or fine_tune(resume="runs/x/snapshots")
    train.evaluate_model(result["deploy_dir"], "data/food101_test_lmdb")
    train.predict(result["deploy_dir"], ["pizza.jpg"])

Modules: config (the documented config tree, YAML / solver.prototxt / overrides), schedule (the
lr schedule, via the LearningRate op's own function), loop (Trainer, fine_tune), checkpoint,
metrics (Caffe-style log, metrics.jsonl), evaluate, plots, predict.
"""
from .checkpoint import CheckpointError, latest_checkpoint, load_checkpoint  # noqa: F401
from .config import (Config, ConfigError, default_config, dump_config, load_config,  # noqa: F401
                     parse_overrides)
from .evaluate import ClassificationMetrics, evaluate_model  # noqa: F401
from .loop import Trainer, TrainingError, fine_tune  # noqa: F401
from .predict import InferenceModel, load_model, predict  # noqa: F401
