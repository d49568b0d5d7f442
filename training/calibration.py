"""Temperature scaling and the binary operating point, both fitted on the validation split.

The temperature divides the logits inside the exported graph (``ExportGraph``), so the service's
probabilities are the calibrated ones; the threshold is then chosen on those calibrated
probabilities, so the two always travel together.
"""

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.metrics import roc_curve

from training.metrics import FloatArray, IntArray, youden_threshold

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


def expected_calibration_error(labels: IntArray, probabilities: FloatArray, bins: int = ECE_BINS) -> float:
    """Top-class confidence vs accuracy over equal-width bins, weighted by the bin's share of films."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if np.any(members):
            gap = float(np.mean(correct[members])) - float(np.mean(confidence[members]))
            total += float(np.mean(members)) * abs(gap)
    return total


def sensitivity_threshold(
    labels: IntArray, positive_scores: FloatArray, positive_index: int, target: float
) -> float:
    """The highest threshold whose validation sensitivity reaches ``target``: the most specific one."""
    _, tpr, thresholds = roc_curve(labels == positive_index, positive_scores, drop_intermediate=False)
    reaching = np.flatnonzero(tpr >= target - 1e-12)
    return float(np.clip(thresholds[reaching[0]], 0.0, 1.0))


def operating_threshold(
    labels: IntArray, positive_scores: FloatArray, positive_index: int, target_sensitivity: float | None
) -> tuple[float, str]:
    """(threshold, how it was chosen): a target sensitivity when given, else Youden's J."""
    if target_sensitivity is None:
        value = youden_threshold(labels, positive_scores, positive_index)
        return value, "Youden's J (max sensitivity + specificity - 1) on validation"
    value = sensitivity_threshold(labels, positive_scores, positive_index, target_sensitivity)
    return value, f"highest threshold reaching sensitivity >= {target_sensitivity:g} on validation"
