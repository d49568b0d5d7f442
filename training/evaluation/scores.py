"""Every number an evaluation reports for one set of predicted probabilities.

The headline metrics come from ``training.stats.metrics.classification_metrics``, so the report's accuracy,
AUC and operating-point figures are, by construction, the ones training and the model card quote.
Per-class scores, macro averages, calibration and ROC curves are added here.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from sklearn.metrics import roc_auc_score, roc_curve

from training.evaluation.results import ClassScores, Reliability, ReliabilityBin, RocCurve, Scores
from training.stats.calibration import ECE_BINS, binned_calibration_error, calibration_bins
from training.stats.metrics import (
    FloatArray,
    IntArray,
    MetricValues,
    classification_metrics,
    predict_labels,
    ratio,
)

BoolArray = npt.NDArray[np.bool_]


def confusion_matrix(labels: IntArray, predicted: IntArray, num_classes: int) -> IntArray:
    """Counts with rows = true class, columns = predicted class."""
    counts: IntArray = np.bincount(labels * num_classes + predicted, minlength=num_classes**2).astype(
        np.int64
    )
    return counts.reshape(num_classes, num_classes)


def binary_auc(is_positive: BoolArray, scores: FloatArray) -> float | None:
    """ROC AUC of ``scores`` for ``is_positive`` (scikit-learn's, ties counting one half); None with
    only one kind of film, where it is undefined."""
    if is_positive.all() or not is_positive.any():
        return None
    return float(roc_auc_score(is_positive, scores))


def one_vs_rest_aucs(labels: IntArray, probabilities: FloatArray) -> list[float | None]:
    return [binary_auc(labels == c, probabilities[:, c]) for c in range(probabilities.shape[1])]


def class_counts(confusion: IntArray) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """(TP, FP, FN, TN) per class, each class against the rest."""
    tp = np.diag(confusion).astype(np.int64)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    tn = confusion.sum() - tp - fp - fn
    return tp, fp, fn, tn


def per_class_scores(
    confusion: IntArray, class_names: Sequence[str], labels: IntArray, probabilities: FloatArray
) -> list[ClassScores]:
    tp, fp, fn, tn = class_counts(confusion)
    aucs = one_vs_rest_aucs(labels, probabilities)
    rows = []
    for c, name in enumerate(class_names):
        # One label per film, so each film is a TP, FP, FN or TN of class c and the Dice overlap of
        # "called c" with "is c", 2TP / (2TP + FP + FN), is the same number as F1.
        overlap = ratio(2 * tp[c], 2 * tp[c] + fp[c] + fn[c])
        rows.append(
            ClassScores(
                name=name,
                support=int(tp[c] + fn[c]),
                predicted=int(tp[c] + fp[c]),
                precision=ratio(tp[c], tp[c] + fp[c]),
                recall=ratio(tp[c], tp[c] + fn[c]),
                specificity=ratio(tn[c], tn[c] + fp[c]),
                f1=overlap,
                dice=overlap,
                auc_ovr=aucs[c],
            )
        )
    return rows


def macro_averages(confusion: IntArray) -> MetricValues:
    """Unweighted means over the classes present among the true labels.

    A class never predicted has no precision; it counts as 0 (scikit-learn's ``zero_division=0``), so
    a model that ignores a class is not rewarded for it. Specificity is averaged where defined.
    """
    tp, fp, fn, tn = class_counts(confusion)
    present = (tp + fn) > 0
    if not np.any(present):
        return {"macro_precision": None, "macro_recall": None, "macro_specificity": None, "macro_f1": None}
    called = tp + fp
    precision = np.divide(tp, called, out=np.zeros(len(tp)), where=called > 0)
    recall = tp / np.maximum(tp + fn, 1)
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    has_negatives = present & ((tn + fp) > 0)
    specificity = tn[has_negatives] / (tn + fp)[has_negatives]
    return {
        "macro_precision": float(np.mean(precision[present])),
        "macro_recall": float(np.mean(recall[present])),
        "macro_specificity": float(np.mean(specificity)) if len(specificity) else None,
        "macro_f1": float(np.mean(f1[present])),
    }


def reliability(
    outcome: BoolArray, predicted: FloatArray, quantity: str, bins: int = ECE_BINS
) -> Reliability:
    """Equal-width bins (lower, upper] of ``predicted`` over [0, 1]; ECE weights each bin's
    |observed rate - mean predicted| by its share of films (empty bins weigh nothing).

    The bins and the ECE are ``training.stats.calibration``'s, which the temperature fit reports too.
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = calibration_bins(predicted, bins)
    rows = []
    for b in range(bins):
        members = which == b
        count = int(np.sum(members))
        mean_predicted = float(np.mean(predicted[members])) if count else None
        observed = float(np.mean(outcome[members])) if count else None
        rows.append(
            ReliabilityBin(
                lower=float(edges[b]),
                upper=float(edges[b + 1]),
                count=count,
                mean_predicted=mean_predicted,
                observed=observed,
            )
        )
    return Reliability(quantity=quantity, ece=binned_calibration_error(outcome, predicted, bins), bins=rows)


def calibration(
    labels: IntArray, probabilities: FloatArray, class_names: Sequence[str], positive_index: int | None
) -> list[Reliability]:
    """Top-class confidence against argmax accuracy; for a binary model also p(positive) against the
    positive rate, the probability the decision threshold is applied to."""
    top = [
        reliability(probabilities.argmax(axis=1) == labels, probabilities.max(axis=1), "top-class confidence")
    ]
    if probabilities.shape[1] != 2 or positive_index is None:
        return top
    positive = reliability(
        labels == positive_index, probabilities[:, positive_index], f"p({class_names[positive_index]})"
    )
    return [*top, positive]


def roc_curves(
    labels: IntArray, probabilities: FloatArray, class_names: Sequence[str], positive_index: int | None
) -> list[RocCurve]:
    """The positive class's curve for a binary model (class 1 without one), else one per class."""
    num_classes = probabilities.shape[1]
    if num_classes == 2:
        classes = [1 if positive_index is None else positive_index]
    else:
        classes = list(range(num_classes))
    curves = []
    for c in classes:
        is_c = labels == c
        if is_c.all() or not is_c.any():
            empty = RocCurve(
                class_name=class_names[c], false_positive_rate=[], true_positive_rate=[], auc=None
            )
            curves.append(empty)
            continue
        fpr, tpr, _ = roc_curve(is_c, probabilities[:, c])
        curves.append(
            RocCurve(
                class_name=class_names[c],
                false_positive_rate=[float(v) for v in fpr],
                true_positive_rate=[float(v) for v in tpr],
                auc=binary_auc(is_c, probabilities[:, c]),
            )
        )
    return curves


def score(
    labels: IntArray,
    probabilities: FloatArray,
    class_names: Sequence[str],
    positive_index: int | None = None,
    threshold: float | None = None,
) -> Scores:
    """All scores of ``probabilities`` [N, C] against ``labels`` [N], deciding as ``predict_labels``."""
    num_classes = len(class_names)
    if probabilities.ndim != 2 or probabilities.shape != (len(labels), num_classes):
        raise ValueError(
            f"probabilities {probabilities.shape} do not match {len(labels)} labels x {num_classes}"
        )
    predicted = predict_labels(probabilities, positive_index, threshold)
    confusion = confusion_matrix(labels, predicted, num_classes)
    reliabilities = calibration(labels, probabilities, class_names, positive_index)
    metrics = classification_metrics(labels, probabilities, positive_index, threshold)
    metrics |= macro_averages(confusion)
    metrics["ece"] = reliabilities[0].ece
    if len(reliabilities) > 1:
        metrics["ece_positive"] = reliabilities[1].ece
    distinct = len(np.unique(predicted))
    return Scores(
        metrics=metrics,
        per_class=per_class_scores(confusion, class_names, labels, probabilities),
        confusion_matrix=confusion.tolist(),
        reliability=reliabilities,
        roc=roc_curves(labels, probabilities, class_names, positive_index),
        distinct_predicted_classes=distinct,
        collapsed=distinct < 2,
    )
