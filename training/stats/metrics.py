"""Validation metrics, the majority-class baseline beside them, and the collapse guard."""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from sklearn.metrics import roc_auc_score, roc_curve

from service.contract import DecisionThreshold, ModelCard, SourceMetrics

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class CollapsedModelError(RuntimeError):
    """The model predicts one class for every validation image: its accuracy is the majority rate."""


MetricValues = dict[str, float | None]
"""Metric name -> value; None where the metric is undefined (e.g. precision with no positive call)."""


def auc(labels: IntArray, probabilities: FloatArray) -> float | None:
    if len(np.unique(labels)) < 2:
        return None
    if probabilities.shape[1] == 2:
        return float(roc_auc_score(labels, probabilities[:, 1]))
    return float(roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"))


def cross_entropy(labels: IntArray, probabilities: FloatArray) -> float:
    picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, 1.0)
    return float(-np.mean(np.log(picked)))


def predict_labels(
    probabilities: FloatArray, positive_index: int | None, threshold: float | None
) -> IntArray:
    """Argmax, except binary models with a threshold: positive iff p(positive) >= threshold."""
    labels: IntArray
    if positive_index is None or threshold is None or probabilities.shape[1] != 2:
        labels = probabilities.argmax(axis=1).astype(np.int64)
        return labels
    positive = probabilities[:, positive_index] >= threshold
    labels = np.where(positive, positive_index, 1 - positive_index).astype(np.int64)
    return labels


def decision_rule(
    threshold: DecisionThreshold | None, class_names: list[str]
) -> tuple[int | None, float | None]:
    """(positive index, threshold) for ``predict_labels`` from a card's operating point; (None, None)
    means argmax."""
    if threshold is None:
        return None, None
    return class_names.index(threshold.positive_class), threshold.value


def classification_metrics(
    labels: IntArray,
    probabilities: FloatArray,
    positive_index: int | None = None,
    threshold: float | None = None,
) -> MetricValues:
    predicted = predict_labels(probabilities, positive_index, threshold)
    num_classes = probabilities.shape[1]
    recalls = [float(np.mean(predicted[labels == c] == c)) for c in range(num_classes) if np.any(labels == c)]
    metrics: MetricValues = {
        "auc": auc(labels, probabilities),
        "accuracy": float(np.mean(predicted == labels)),
        "balanced_accuracy": float(np.mean(recalls)),
        "cross_entropy": cross_entropy(labels, probabilities),
        "distinct_predicted_classes": float(len(np.unique(predicted))),
    }
    if num_classes == 2 and positive_index is not None:
        is_pos, said_pos = labels == positive_index, predicted == positive_index
        tp, fp = np.sum(is_pos & said_pos), np.sum(~is_pos & said_pos)
        fn, tn = np.sum(is_pos & ~said_pos), np.sum(~is_pos & ~said_pos)
        metrics |= {
            "sensitivity": ratio(tp, tp + fn),
            "specificity": ratio(tn, tn + fp),
            "precision": ratio(tp, tp + fp),
            "f1": ratio(2 * tp, 2 * tp + fp + fn),
        }
    return metrics


def format_metric(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def ratio(numerator: float | np.integer, denominator: float | np.integer) -> float | None:
    """numerator / denominator, or None (undefined) when the denominator is zero."""
    return float(numerator / denominator) if denominator else None


def majority_baseline(
    train_labels: IntArray, val_labels: IntArray, num_classes: int, positive_index: int | None
) -> MetricValues:
    """Always predict the training split's most frequent class, with its frequencies as probabilities."""
    constant = np.tile(class_prior(train_labels, num_classes), (len(val_labels), 1))
    return classification_metrics(val_labels, constant, positive_index, threshold=None)


def class_prior(train_labels: IntArray, num_classes: int) -> FloatArray:
    """Each class's frequency among ``train_labels``: the majority-class baseline's constant prediction."""
    prior: FloatArray = np.bincount(train_labels, minlength=num_classes) / len(train_labels)
    return prior


def card_train_labels(card: ModelCard) -> IntArray | None:
    """Labels with the card's training-split class counts (order irrelevant), to set a baseline's prior
    for an exported model; None when the card records no training split."""
    train = card.training_data.splits.get("train")
    if train is None:
        return None
    counts = [train.per_class.get(name, 0) for name in card.class_names]
    return np.repeat(np.arange(len(card.class_names), dtype=np.int64), counts)


def youden_threshold(labels: IntArray, positive_scores: FloatArray, positive_index: int) -> float:
    """The threshold maximising sensitivity + specificity - 1 on validation."""
    fpr, tpr, thresholds = roc_curve(labels == positive_index, positive_scores)
    best = int(np.argmax(tpr - fpr))
    return float(np.clip(thresholds[best], 0.0, 1.0))


def check_not_collapsed(metrics: MetricValues, class_names: list[str], where: str) -> None:
    if (metrics["distinct_predicted_classes"] or 0) < 2:
        raise CollapsedModelError(
            f"COLLAPSED MODEL: on {where} every image is predicted as the same class "
            f"(of {len(class_names)}: {', '.join(class_names)}). Its accuracy "
            f"{metrics['accuracy'] or 0:.3f} is just the majority-class rate. "
            "Refusing to report or export it: check the learning rate, class weighting, labels "
            "and input preprocessing."
        )


def per_source_metrics(
    labels: IntArray,
    probabilities: FloatArray,
    sources: Sequence[str],
    positive_index: int | None,
    threshold: float | None,
) -> dict[str, SourceMetrics]:
    """Each source's films scored alone (AUC, and sensitivity/specificity at ``threshold``)."""
    names = np.asarray(sources)
    out = {}
    for name in sorted(set(names.tolist())):
        mask = names == name
        metrics = classification_metrics(labels[mask], probabilities[mask], positive_index, threshold)
        positives = int(np.sum(labels[mask] == positive_index)) if positive_index is not None else 0
        out[name or "all"] = SourceMetrics(
            films=int(mask.sum()),
            positives=positives,
            auc=metrics["auc"],
            sensitivity=metrics.get("sensitivity"),
            specificity=metrics.get("specificity"),
        )
    return out
