"""Temperature scaling and the binary operating point, both fitted on the validation split.

The temperature divides the logits inside the exported graph (``ExportGraph``), so the service's
probabilities are the calibrated ones; the threshold is then chosen on those calibrated
probabilities, so the two always travel together.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.metrics import roc_curve

from training.stats.metrics import FloatArray, IntArray, youden_threshold

TEMPERATURE_METHOD = "temperature scaling (one scalar, minimum validation cross-entropy)"
ECE_BINS = 15
# A temperature outside this range means the logits carry no usable scale (e.g. a collapsed model).
_LOG_T_BOUNDS = (float(np.log(0.05)), float(np.log(20.0)))


def nll(logits: npt.NDArray[np.floating], labels: IntArray, temperature: float) -> float:
    log_p = log_softmax(logits.astype(np.float64) / temperature, axis=1)
    return float(-np.mean(log_p[np.arange(len(labels)), labels]))


def fit_temperature(logits: npt.NDArray[np.floating], labels: IntArray) -> float:
    """The T > 0 minimising validation cross-entropy of softmax(logits / T); 1-D and convex in log T."""
    result = minimize_scalar(
        lambda log_t: nll(logits, labels, float(np.exp(log_t))), bounds=_LOG_T_BOUNDS, method="bounded"
    )
    return float(np.exp(result.x))


def calibrated_probabilities(logits: npt.NDArray[np.floating], temperature: float) -> FloatArray:
    out: FloatArray = softmax(logits.astype(np.float64) / temperature, axis=1)
    return out


def calibration_bins(predicted: FloatArray, bins: int = ECE_BINS) -> IntArray:
    """Each value's bin among ``bins`` equal-width bins (lower, upper] over [0, 1]."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which: IntArray = np.clip(np.digitize(predicted, edges[1:-1], right=True), 0, bins - 1).astype(np.int64)
    return which


def binned_calibration_error(
    outcome: npt.NDArray[np.bool_], predicted: FloatArray, bins: int = ECE_BINS
) -> float:
    """Sum over bins of (share of films in the bin) x |observed rate - mean predicted|."""
    which = calibration_bins(predicted, bins)
    total = 0.0
    for b in range(bins):
        members = which == b
        if np.any(members):
            gap = float(np.mean(outcome[members])) - float(np.mean(predicted[members]))
            total += float(np.mean(members)) * abs(gap)
    return total


def expected_calibration_error(labels: IntArray, probabilities: FloatArray, bins: int = ECE_BINS) -> float:
    """Top-class confidence against argmax accuracy."""
    return binned_calibration_error(probabilities.argmax(axis=1) == labels, probabilities.max(axis=1), bins)


def sensitivity_threshold(
    labels: IntArray, positive_scores: FloatArray, positive_index: int, target: float
) -> float:
    """The highest threshold whose validation sensitivity reaches ``target``: the most specific one."""
    _, tpr, thresholds = roc_curve(labels == positive_index, positive_scores, drop_intermediate=False)
    reaching = np.flatnonzero(tpr >= target - 1e-12)
    return float(np.clip(thresholds[reaching[0]], 0.0, 1.0))


def worst_source_threshold(
    labels: IntArray, positive_scores: FloatArray, positive_index: int, target: float, sources: Sequence[str]
) -> float:
    """The highest threshold at which every source's validation sensitivity reaches ``target``: each
    source's own sensitivity threshold, and the lowest of them (the worst source decides). Sources
    without a positive film on validation cannot vote."""
    names = np.asarray(sources)
    values = [
        sensitivity_threshold(labels[names == name], positive_scores[names == name], positive_index, target)
        for name in sorted(set(names.tolist()))
        if np.any(labels[names == name] == positive_index)
    ]
    return min(values)


def operating_threshold(
    labels: IntArray,
    positive_scores: FloatArray,
    positive_index: int,
    target_sensitivity: float | None,
    sources: Sequence[str] | None = None,
) -> tuple[float, str]:
    """(threshold, how it was chosen): a target sensitivity when given (on every source's validation
    films when ``sources`` name more than one), else Youden's J."""
    if target_sensitivity is not None and sources is not None and len(set(sources)) > 1:
        value = worst_source_threshold(labels, positive_scores, positive_index, target_sensitivity, sources)
        return value, (
            f"highest threshold reaching sensitivity >= {target_sensitivity:g} on the validation films of "
            f"every source ({', '.join(sorted(set(sources)))}): the worst source decides"
        )
    if target_sensitivity is None:
        value = youden_threshold(labels, positive_scores, positive_index)
        return value, "Youden's J (max sensitivity + specificity - 1) on validation"
    value = sensitivity_threshold(labels, positive_scores, positive_index, target_sensitivity)
    return value, f"highest threshold reaching sensitivity >= {target_sensitivity:g} on validation"
