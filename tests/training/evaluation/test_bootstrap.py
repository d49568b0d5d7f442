"""Bootstrap intervals: around the point estimate, narrower with more films, reproducible."""

import numpy as np
import pytest

from training.evaluation.bootstrap import bootstrap_intervals, interval_metrics, stratified_resample
from training.evaluation.results import BootstrapSettings
from training.evaluation.scores import score
from training.stats.metrics import predict_labels

NAMES = ["NORMAL", "PNEUMONIA"]


def _binary_set(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.4).astype(np.int64)
    p = np.clip(0.5 + 0.25 * (2 * labels - 1) + rng.normal(0, 0.2, n), 0.01, 0.99)
    return labels, np.stack([1 - p, p], axis=1)


def _widths(labels: np.ndarray, probabilities: np.ndarray, resamples: int = 400) -> dict[str, float]:
    predicted = predict_labels(probabilities, 1, 0.5)
    intervals = bootstrap_intervals(
        labels, probabilities, predicted, 1, BootstrapSettings(resamples=resamples, seed=0)
    )
    return {k: v.high - v.low for k, v in intervals.items()}


def test_intervals_contain_the_point_estimate() -> None:
    labels, probabilities = _binary_set(80)
    point = score(labels, probabilities, NAMES, positive_index=1, threshold=0.5).metrics
    predicted = predict_labels(probabilities, 1, 0.5)
    intervals = bootstrap_intervals(
        labels, probabilities, predicted, 1, BootstrapSettings(resamples=500, seed=1)
    )
    expected = {"accuracy", "balanced_accuracy", "auc", "macro_f1", "sensitivity", "specificity", "f1"}
    assert set(intervals) == expected
    for name, interval in intervals.items():
        value = point[name]
        assert value is not None
        assert interval.low <= value <= interval.high, name
        assert interval.low < interval.high, name


def test_interval_metrics_are_the_reported_ones() -> None:
    """The fast per-resample formulas give the report's point estimates on the full split."""
    labels, probabilities = _binary_set(50, seed=2)
    point = score(labels, probabilities, NAMES, positive_index=1, threshold=0.3).metrics
    fast = interval_metrics(labels, probabilities, predict_labels(probabilities, 1, 0.3), 1)
    for name, value in fast.items():
        assert value == pytest.approx(point[name], abs=1e-12), name
    rng = np.random.default_rng(0)
    labels3, probabilities3 = rng.integers(0, 3, 40), rng.dirichlet([1, 1, 1], 40)
    point3 = score(labels3, probabilities3, ["A", "B", "C"]).metrics
    fast3 = interval_metrics(labels3, probabilities3, probabilities3.argmax(axis=1), None)
    assert set(fast3) == {"accuracy", "balanced_accuracy", "auc", "macro_f1", "macro_specificity"}
    for name, value in fast3.items():
        assert value == pytest.approx(point3[name], abs=1e-12), name


def test_intervals_shrink_with_more_films() -> None:
    labels, probabilities = _binary_set(40)
    small = _widths(labels, probabilities)
    # The same films ten times over: same estimates, ten times the evidence, ~1/sqrt(10) the width.
    large = _widths(np.tile(labels, 10), np.tile(probabilities, (10, 1)))
    for name, width in small.items():
        assert large[name] < 0.6 * width, name


def test_resampling_is_seeded_and_stratified() -> None:
    labels, probabilities = _binary_set(30)
    predicted = predict_labels(probabilities, 1, 0.5)
    settings = BootstrapSettings(resamples=50, seed=7)
    first = bootstrap_intervals(labels, probabilities, predicted, 1, settings)
    assert bootstrap_intervals(labels, probabilities, predicted, 1, settings) == first
    other = bootstrap_intervals(labels, probabilities, predicted, 1, BootstrapSettings(resamples=50, seed=8))
    assert other != first
    idx = stratified_resample(labels, np.random.default_rng(0))
    assert np.array_equal(np.bincount(labels[idx]), np.bincount(labels))
    assert (
        bootstrap_intervals(labels, probabilities, predicted, 1, BootstrapSettings(resamples=0, seed=0)) == {}
    )
