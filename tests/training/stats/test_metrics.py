from pathlib import Path

import numpy as np
import pytest

from service.contract import DecisionThreshold, ModelCard
from service.contract.model_card import CARD_FILENAME, binary_threshold
from training.stats.metrics import (
    CollapsedModelError,
    card_train_labels,
    check_not_collapsed,
    class_prior,
    classification_metrics,
    majority_baseline,
    youden_threshold,
)

LABELS = np.array([0, 0, 0, 1, 1, 1, 1, 1])


def _probs(positive: list[float]) -> np.ndarray:
    p = np.array(positive)
    return np.stack([1 - p, p], axis=1)


def test_binary_metrics_at_a_threshold() -> None:
    probs = _probs([0.1, 0.4, 0.6, 0.3, 0.7, 0.8, 0.9, 0.95])
    m = classification_metrics(LABELS, probs, positive_index=1, threshold=0.5)
    assert m["sensitivity"] == pytest.approx(4 / 5)
    assert m["specificity"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["auc"] == pytest.approx(13 / 15)
    assert m["distinct_predicted_classes"] == 2


def test_majority_baseline_is_the_majority_rate_and_chance_auc() -> None:
    baseline = majority_baseline(np.array([0, 1, 1, 1]), LABELS, 2, positive_index=1)
    assert baseline["accuracy"] == pytest.approx(5 / 8)
    assert baseline["auc"] == pytest.approx(0.5)
    assert baseline["sensitivity"] == 1.0
    assert baseline["specificity"] == 0.0
    with pytest.raises(CollapsedModelError, match="majority-class rate"):
        check_not_collapsed(baseline, ["NORMAL", "PNEUMONIA"], "the baseline")


def test_undefined_metrics_are_none_not_nan() -> None:
    m = classification_metrics(LABELS, _probs([0.1] * 8), positive_index=1, threshold=0.5)
    assert m["precision"] is None
    assert classification_metrics(np.ones(4, dtype=np.int64), _probs([0.9] * 4), 1, 0.5)["auc"] is None


def test_a_collapsed_model_fails_loudly() -> None:
    collapsed = classification_metrics(LABELS, _probs([0.9] * 8), positive_index=1, threshold=0.5)
    with pytest.raises(CollapsedModelError, match="COLLAPSED MODEL"):
        check_not_collapsed(collapsed, ["NORMAL", "PNEUMONIA"], "validation")


def test_youden_threshold_separates_a_separable_set() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8, 0.9, 0.95])
    threshold = youden_threshold(LABELS, scores, positive_index=1)
    assert 0.3 < threshold <= 0.6
    m = classification_metrics(LABELS, _probs(list(scores)), 1, threshold)
    assert m["sensitivity"] == 1.0
    assert m["specificity"] == 1.0


def test_class_prior_is_each_class_frequency_in_the_training_labels() -> None:
    np.testing.assert_allclose(class_prior(np.array([0, 1, 1, 1]), 3), [0.25, 0.75, 0.0])


def test_card_train_labels_rebuild_the_training_class_counts(tiny_model_dir: Path) -> None:
    card = ModelCard.model_validate_json((tiny_model_dir / CARD_FILENAME).read_bytes())
    train = card.training_data.splits["train"]
    labels = card_train_labels(card)
    assert labels is not None
    counts = np.bincount(labels, minlength=len(card.class_names))
    assert counts.tolist() == [train.per_class.get(name, 0) for name in card.class_names]
    no_split = card.model_copy(update={"training_data": card.training_data.model_copy(update={"splits": {}})})
    assert card_train_labels(no_split) is None


def test_a_threshold_applies_only_to_binary_cards(tiny_model_dir: Path) -> None:
    card = ModelCard.model_validate_json((tiny_model_dir / CARD_FILENAME).read_bytes())
    threshold = DecisionThreshold(positive_class=card.class_names[-1], value=0.7, method="test")
    binary = card.model_copy(update={"class_names": card.class_names[:2], "decision_threshold": threshold})
    three = card.model_copy(update={"class_names": ["A", "B", "C"], "decision_threshold": threshold})
    assert binary_threshold(binary) == threshold
    assert binary_threshold(three) is None
