"""Scores must not flatter (#16 item 4): argmax ties never score, uniform outputs and classes
that are never predicted are findings of the evaluation."""
import numpy as np
import torch

from food101.inference.evaluate import ClassificationMetrics, summary_lines


def test_uniform_outputs_score_nothing_and_are_a_finding():
    # a dead conv10 ReLU: every class gets 1/C for every image; argmax would say class 0
    m = ClassificationMetrics(6)
    labels = np.repeat(np.arange(6), 10)
    m.add(torch.full((60, 6), 1 / 6), labels)
    r = m.results(["apple_pie", "caesar_salad", "pizza", "ramen", "sushi", "waffles"])
    assert r["top1"] == 0.0 and r["per_class"]["apple_pie"] == 0.0
    assert r["top5"] == 0.0            # 5 other classes tie with the label: not in the top 5
    assert r["ties"] == 10 and r["uniform"] == 60
    assert r["never_predicted"] == ["pizza", "ramen", "sushi", "waffles"]
    text = "\n".join(summary_lines(r))
    assert "uniform outputs" in text and "60 of 60 images" in text
    assert "10 image(s) had their label tied" in text


def test_partial_ties_are_broken_against_the_label():
    m = ClassificationMetrics(3, top_k=2)
    probs = np.array([[0.4, 0.4, 0.2],     # label 0 tied with 1: wrong, confusion -> 1
                      [0.4, 0.4, 0.2],     # label 1 tied with 0: wrong, confusion -> 0
                      [0.1, 0.3, 0.6],     # label 2 strictly best: right
                      [0.5, 0.25, 0.25]],  # label 2 tied with 1 for second place: not top-2
                     np.float32)
    m.add(probs, [0, 1, 2, 2])
    r = m.results()
    assert r["top1"] == 0.25 and r["ties"] == 1
    assert r["confusion"][0] == [0, 1, 0] and r["confusion"][1] == [1, 0, 0]
    assert r["top5"] == 0.75           # top-2 here: rows 0, 1, 2 yes; row 3 no
    # what plain argmax/topk would have said, for contrast
    assert (torch.tensor(probs).argmax(1) == torch.tensor([0, 1, 2, 2])).float().mean() == 0.5


def test_never_predicted_class_is_a_finding():
    m = ClassificationMetrics(3)
    m.add(np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.2, 0.7, 0.1]], np.float32), [0, 2, 1])
    r = m.results(["a", "b", "c"])
    assert r["never_predicted"] == ["c"]
    assert any("never predicted: c" in f for f in r["findings"])
    assert r["ties"] == 0 and r["uniform"] == 0
