"""Temperature scaling and the operating point for a target sensitivity, on hand-made scores."""

import numpy as np
import pytest

from training.stats.calibration import (
    calibrated_probabilities,
    expected_calibration_error,
    fit_temperature,
    nll,
    operating_threshold,
    sensitivity_threshold,
)


def _overconfident(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits drawn from a well-calibrated model at T = 1, then multiplied by 3: overconfident by 3x."""
    rng = np.random.default_rng(seed)
    margin = rng.normal(0.0, 2.0, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(np.int64)
    logits = np.stack([np.zeros(n), 3.0 * margin], axis=1)
    return logits, labels


def test_fitted_temperature_undoes_known_overconfidence_and_lowers_ece() -> None:
    logits, labels = _overconfident()
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)
    assert nll(logits, labels, temperature) < nll(logits, labels, 1.0)
    before = expected_calibration_error(labels, calibrated_probabilities(logits, 1.0))
    after = expected_calibration_error(labels, calibrated_probabilities(logits, temperature))
    assert after < before / 2


def test_temperature_keeps_the_ranking() -> None:
    logits, _ = _overconfident(200)
    raw, scaled = calibrated_probabilities(logits, 1.0), calibrated_probabilities(logits, 2.5)
    assert np.array_equal(np.argsort(raw[:, 1]), np.argsort(scaled[:, 1]))


def test_expected_calibration_error_by_hand() -> None:
    # Two films at confidence 0.9 (one right), two at 0.6 (both right): |0.5 - 0.9| / 2 + |1 - 0.6| / 2.
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])
    assert expected_calibration_error(labels, probabilities) == pytest.approx(0.2 + 0.2)


def test_threshold_for_target_sensitivity_is_the_most_specific_one_reaching_it() -> None:
    labels = np.array([0] * 10 + [1] * 20)
    scores = np.concatenate([np.linspace(0.0, 0.45, 10), np.linspace(0.3, 1.0, 20)])
    threshold = sensitivity_threshold(labels, scores, positive_index=1, target=0.95)
    called = scores >= threshold
    sensitivity = called[labels == 1].mean()
    assert sensitivity >= 0.95
    # One step higher would miss the target: no more specific threshold reaches it.
    higher = np.min(scores[scores > threshold])
    assert (scores >= higher)[labels == 1].mean() < 0.95


def test_operating_threshold_names_its_method() -> None:
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    _, youden = operating_threshold(labels, scores, 1, None)
    value, target = operating_threshold(labels, scores, 1, 1.0)
    assert "Youden" in youden and "sensitivity >= 1" in target
    assert value == pytest.approx(0.35)
