"""Inference: a deployed model's predictions and its evaluation on a labelled LMDB.

    from food101 import inference
    inference.predict("runs/x/deploy", ["pizza.jpg"])            # top-5 classes per image
    inference.evaluate_model("runs/x/deploy", "data/food101_test_lmdb")

Modules: predict (InferenceModel, load_model, predict), evaluate (ClassificationMetrics,
evaluate_batches: the one evaluation loop, also run by training; evaluate_model), plots
(the confusion matrix).
"""
from food101.inference.evaluate import ClassificationMetrics, evaluate_model  # noqa: F401
from food101.inference.predict import InferenceModel, load_model, predict  # noqa: F401
