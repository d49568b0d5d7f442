"""Percentile bootstrap confidence intervals for the headline metrics.

Resampling is stratified by true class: each resample draws, with replacement, as many films of each
class as the split holds. Every resample therefore contains every class, so AUC, sensitivity and
specificity are always defined; the price is that the intervals leave out the sampling variation of
the prevalence itself (which the accuracy of a fixed split does not have either).
"""

import numpy as np

from training.evaluation.results import BootstrapSettings, ConfidenceInterval
from training.evaluation.scores import class_counts, confusion_matrix, macro_averages
from training.stats.metrics import FloatArray, IntArray, MetricValues, auc

DEFAULT_RESAMPLES = 1000


def interval_metrics(
    labels: IntArray, probabilities: FloatArray, predicted: IntArray, positive_index: int | None
) -> MetricValues:
    """The metrics that get an interval, computed the same way as their point estimates in
    ``scores.score`` (the tests hold the two to each other) but without its per-call overheads."""
    num_classes = probabilities.shape[1]
    confusion = confusion_matrix(labels, predicted, num_classes)
    macro = macro_averages(confusion)
    metrics: MetricValues = {
        "accuracy": float(np.mean(predicted == labels)),
        "balanced_accuracy": macro["macro_recall"],
        "auc": auc(labels, probabilities),
        "macro_f1": macro["macro_f1"],
    }
    if num_classes == 2 and positive_index is not None:
        tp, fp, fn, tn = (int(count[positive_index]) for count in class_counts(confusion))
        metrics |= {
            "sensitivity": tp / (tp + fn) if tp + fn else None,
            "specificity": tn / (tn + fp) if tn + fp else None,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
        }
    else:
        metrics["macro_specificity"] = macro["macro_specificity"]
    return metrics


def stratified_resample(labels: IntArray, rng: np.random.Generator) -> IntArray:
    """Indices of one resample: each class's films drawn with replacement, class counts kept."""
    parts = [rng.choice(members, size=len(members)) for members in _class_members(labels)]
    indices: IntArray = np.concatenate(parts).astype(np.int64)
    return indices


def _class_members(labels: IntArray) -> list[IntArray]:
    return [np.flatnonzero(labels == c) for c in np.unique(labels)]


def bootstrap_intervals(
    labels: IntArray,
    probabilities: FloatArray,
    predicted: IntArray,
    positive_index: int | None,
    settings: BootstrapSettings,
) -> dict[str, ConfidenceInterval]:
    """Metric -> percentile interval over ``settings.resamples`` seeded stratified resamples.

    A metric undefined on the full split gets no interval; ``resamples == 0`` gives none at all.
    """
    if settings.resamples == 0 or len(labels) == 0:
        return {}
    rng = np.random.default_rng(settings.seed)
    draws: dict[str, list[float]] = {}
    for _ in range(settings.resamples):
        idx = stratified_resample(labels, rng)
        for name, value in interval_metrics(
            labels[idx], probabilities[idx], predicted[idx], positive_index
        ).items():
            if value is not None:
                draws.setdefault(name, []).append(value)
    tail = 100.0 * (1.0 - settings.level) / 2.0
    intervals = {}
    for name, values in draws.items():
        low, high = np.percentile(values, [tail, 100.0 - tail])
        intervals[name] = ConfidenceInterval(low=float(low), high=float(high))
    return intervals
