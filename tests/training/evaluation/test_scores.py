"""The report's numbers on examples small enough to count by hand."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from training.evaluation.scores import binary_auc, confusion_matrix, reliability, score
from training.stats.metrics import classification_metrics

NAMES = ["A", "B", "C"]
# Ten films of three classes and what a model called them:
#   true A: A A B C    true B: B B A    true C: C C B
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
CALLED = np.array([0, 0, 1, 2, 1, 1, 0, 2, 2, 1])


def _probabilities(called: np.ndarray, confidence: np.ndarray, num_classes: int = 3) -> np.ndarray:
    """Rows whose argmax is ``called`` with that probability, the rest spread evenly."""
    p = np.tile(((1 - confidence) / (num_classes - 1))[:, None], (1, num_classes))
    p[np.arange(len(called)), called] = confidence
    return p


def test_three_classes_counted_by_hand() -> None:
    confidence = np.array([0.9, 0.8, 0.5, 0.6, 0.7, 0.9, 0.4, 0.8, 0.6, 0.5])
    scores = score(LABELS, _probabilities(CALLED, confidence), NAMES)
    # Rows = true class, columns = called.
    assert scores.confusion_matrix == [[2, 1, 1], [1, 2, 0], [0, 1, 2]]
    # Per class: TP = diagonal, FP = column - TP, FN = row - TP, TN = the other films.
    tp, fp, fn, tn = [2, 2, 2], [1, 2, 1], [2, 1, 1], [5, 5, 6]
    assert [c.support for c in scores.per_class] == [4, 3, 3]
    assert [c.predicted for c in scores.per_class] == [3, 4, 3]
    expected = {
        "precision": [2 / 3, 2 / 4, 2 / 3],
        "recall": [2 / 4, 2 / 3, 2 / 3],
        "specificity": [5 / 6, 5 / 7, 6 / 7],
        "f1": [4 / 7, 4 / 7, 4 / 6],
        "dice": [2 * t / (2 * t + p + n) for t, p, n in zip(tp, fp, fn, strict=True)],
    }
    assert [c.specificity for c in scores.per_class] == pytest.approx(
        [n / (n + p) for n, p in zip(tn, fp, strict=True)]
    )
    for field, values in expected.items():
        assert [getattr(c, field) for c in scores.per_class] == pytest.approx(values), field
    m = scores.metrics
    assert m["accuracy"] == pytest.approx(6 / 10)
    assert m["balanced_accuracy"] == pytest.approx((2 / 4 + 2 / 3 + 2 / 3) / 3)
    assert m["macro_precision"] == pytest.approx((2 / 3 + 2 / 4 + 2 / 3) / 3)
    assert m["macro_recall"] == pytest.approx(m["balanced_accuracy"])
    assert m["macro_specificity"] == pytest.approx((5 / 6 + 5 / 7 + 6 / 7) / 3)
    assert m["macro_f1"] == pytest.approx((4 / 7 + 4 / 7 + 4 / 6) / 3)
    assert m["distinct_predicted_classes"] == 3
    assert scores.distinct_predicted_classes == 3
    assert not scores.collapsed
    assert "sensitivity" not in m  # no positive class for three classes


def test_three_classes_agree_with_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 60)
    probabilities = rng.dirichlet([1, 1, 1], 60)
    scores = score(labels, probabilities, NAMES)
    called = probabilities.argmax(axis=1)
    assert scores.metrics["macro_f1"] == pytest.approx(f1_score(labels, called, average="macro"))
    assert scores.metrics["macro_precision"] == pytest.approx(
        precision_score(labels, called, average="macro", zero_division=0)
    )
    assert [c.recall for c in scores.per_class] == pytest.approx(recall_score(labels, called, average=None))
    ovr = [roc_auc_score(labels == c, probabilities[:, c]) for c in range(3)]
    assert [c.auc_ovr for c in scores.per_class] == pytest.approx(ovr)
    assert scores.metrics["auc"] == pytest.approx(roc_auc_score(labels, probabilities, multi_class="ovr"))
    assert [curve.class_name for curve in scores.roc] == NAMES


def test_binary_at_a_threshold_keeps_training_metrics() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    p = np.array([0.1, 0.4, 0.6, 0.3, 0.7, 0.8, 0.9, 0.95])
    probabilities = np.stack([1 - p, p], axis=1)
    scores = score(labels, probabilities, ["NORMAL", "PNEUMONIA"], positive_index=1, threshold=0.5)
    reference = classification_metrics(labels, probabilities, 1, 0.5)
    for key, value in reference.items():
        assert scores.metrics[key] == pytest.approx(value), key
    assert scores.confusion_matrix == [[2, 1], [1, 4]]
    positive = scores.per_class[1]
    assert (positive.recall, positive.specificity) == pytest.approx((4 / 5, 2 / 3))
    assert positive.f1 == pytest.approx(reference["f1"])
    # At threshold 0.75 the films at 0.6 and 0.7 turn negative: the false positive goes, a false
    # negative comes.
    stricter = score(labels, probabilities, ["NORMAL", "PNEUMONIA"], positive_index=1, threshold=0.75)
    assert stricter.confusion_matrix == [[3, 0], [2, 3]]
    assert [curve.class_name for curve in scores.roc] == ["PNEUMONIA"]
    assert [r.quantity for r in scores.reliability] == ["top-class confidence", "p(PNEUMONIA)"]


def test_expected_calibration_error_by_hand() -> None:
    # p(positive) and the true labels; argmax is positive iff p > 0.5.
    p = np.array([0.95, 0.95, 0.65, 0.65, 0.35, 0.35])
    labels = np.array([1, 0, 1, 1, 0, 1])
    probabilities = np.stack([1 - p, p], axis=1)
    scores = score(labels, probabilities, ["N", "P"], positive_index=1)
    top, positive = scores.reliability
    # Top-class confidence 0.95 (2 films, 1 right) and 0.65 (4 films, 3 right):
    assert top.ece == pytest.approx(2 / 6 * abs(0.5 - 0.95) + 4 / 6 * abs(0.75 - 0.65))
    filled = [b for b in top.bins if b.count]
    assert [(b.count, b.observed) for b in filled] == [(4, 0.75), (2, 0.5)]
    assert len(top.bins) == 15
    # p(positive) 0.35 (1 of 2 positive), 0.65 (2 of 2), 0.95 (1 of 2):
    assert positive.ece == pytest.approx((abs(0.5 - 0.35) + abs(1.0 - 0.65) + abs(0.5 - 0.95)) / 3)
    assert scores.metrics["ece"] == top.ece
    assert scores.metrics["ece_positive"] == positive.ece


def test_bin_edges_are_upper_inclusive() -> None:
    bins = reliability(np.array([True, False, True]), np.array([0.0, 1 / 15, 1.0]), "x").bins
    assert bins[0].count == 2  # 0 and exactly 1/15 fall in (0, 1/15]
    assert bins[-1].count == 1


def test_binary_auc_by_hand_with_a_tie_and_undefined_for_one_class() -> None:
    # Pairs (positive, negative): (0.35, 0.1) right, (0.35, 0.4) wrong, (0.8, *) right, and a tie
    # (0.4, 0.4) counting one half: (1 + 0 + 1 + 1 + 0.5 + 1) / 6.
    is_positive = np.array([False, False, True, True, True])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.4])
    assert binary_auc(is_positive, scores) == pytest.approx(4.5 / 6)
    assert binary_auc(np.ones(4, dtype=bool), scores[:4]) is None


def test_a_collapsed_model_is_flagged() -> None:
    constant = np.tile([0.2, 0.7, 0.1], (len(LABELS), 1))
    scores = score(LABELS, constant, NAMES)
    assert scores.collapsed
    assert scores.distinct_predicted_classes == 1
    assert scores.metrics["accuracy"] == pytest.approx(3 / 10)
    assert scores.per_class[0].precision is None  # never called A
    # A class never called counts as precision 0 in the macro mean, not as missing.
    assert scores.metrics["macro_precision"] == pytest.approx((0 + 3 / 10 + 0) / 3)
    assert confusion_matrix(LABELS, np.ones(10, dtype=np.int64), 3).tolist() == [
        [0, 4, 0],
        [0, 3, 0],
        [0, 3, 0],
    ]
