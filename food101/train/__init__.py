"""Training: the solver config, the loop, checkpoints, metrics, evaluation, plots, prediction.

    from food101 import train
    cfg = train.load_config("configs/food101_squeezenet.yaml", overrides=["solver.max_iter=100"])
    result = train.fine_tune(cfg)                  # or fine_tune(resume="runs/x/snapshots")
    train.evaluate_model(result["deploy_dir"], "data/food101_test_lmdb")
    train.predict(result["deploy_dir"], ["pizza.jpg"])

Modules: config (the documented config tree, YAML / solver.prototxt / overrides), schedule (the
lr schedule, via the LearningRate op's own function), loop (Trainer, fine_tune), checkpoint,
metrics (Caffe-style log, metrics.jsonl), plots. Prediction and evaluation: food101.inference.
"""
from food101.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint  # noqa: F401
from food101.train.config import (Config, ConfigError, default_config, dump_config, load_config,  # noqa: F401
                     parse_overrides)
from food101.train.loop import Trainer, TrainingError, fine_tune  # noqa: F401
# prediction and evaluation belong to food101.inference; these names stay here for notebooks
from food101.inference import (ClassificationMetrics, InferenceModel, evaluate_model,  # noqa: F401
                               load_model, predict)
