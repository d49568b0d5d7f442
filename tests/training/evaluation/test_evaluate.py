"""``evaluate`` and ``write_report`` with a stand-in predictor: no model, no training."""

from pathlib import Path

import numpy as np
import pytest

from tests.training.evaluation.report_files import assert_report_files
from training.evaluation import (
    EvaluationError,
    EvaluationReport,
    Predictions,
    evaluate,
    read_report,
    write_report,
)
from training.evaluation.predictors import run_timed
from training.evaluation.results import Complexity, ModelIdentity

NAMES = ["NORMAL", "PNEUMONIA"]
SIZE = 16


class FixedPredictor:
    """Returns given probabilities and a CAM that is the film itself (any map will do here)."""

    def __init__(self, probabilities: np.ndarray) -> None:
        self.probabilities = probabilities

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity(kind="pytorch", source="test", architecture="fixed")

    @property
    def runtime(self) -> str:
        return "numpy"

    def predict(self, inputs: np.ndarray, batch_size: int = 32) -> Predictions:
        cams = np.repeat(inputs[:, :, ::4, ::4], self.probabilities.shape[1], axis=1)
        return Predictions(self.probabilities, cams.astype(np.float32), 1e-3, batch_size)

    def complexity(self, height: int, width: int) -> Complexity:
        return Complexity(parameters=0, parameters_counted="none", flops_per_image=None, flops_note="none")


def _films(n: int) -> np.ndarray:
    return np.random.default_rng(0).random((n, 1, SIZE, SIZE), dtype=np.float32)


def _evaluate(
    p: list[float],
    labels: list[int],
    positive_index: int | None = 1,
    split: str = "validation",
    training_seconds: float | None = None,
) -> EvaluationReport:
    """A binary model with p(PNEUMONIA) = ``p``, thresholded at 0.5; training prior 1/3 : 2/3."""
    positive = np.array(p)
    return evaluate(
        FixedPredictor(np.stack([1 - positive, positive], axis=1)),
        _films(len(p)),
        np.array(labels),
        NAMES,
        positive_index=positive_index,
        threshold=0.5,
        train_labels=np.array([0, 1, 1]),
        split=split,
        training_seconds=training_seconds,
        bootstrap=100,
    )


def test_a_collapsed_predictor_is_flagged_loudly(tmp_path: Path) -> None:
    report = _evaluate([0.9] * 6, [0, 0, 1, 1, 1, 1])
    assert report.collapsed and report.scores.collapsed
    assert report.collapse_message is not None and "COLLAPSED" in report.collapse_message
    assert report.scores.metrics["accuracy"] == pytest.approx(4 / 6)
    write_report(report, tmp_path)
    markdown = assert_report_files(tmp_path)
    assert markdown.index("COLLAPSED MODEL") < markdown.index("## Metrics")  # the banner comes first


def test_report_holds_model_and_baseline_and_round_trips(tmp_path: Path) -> None:
    # Called at 0.5: N P P P N P; right: films 0 (p 0.85), 2 (0.7), 3 (0.8), 5 (0.9); wrong: 1 (0.6), 4 (0.8).
    report = _evaluate(
        [0.15, 0.6, 0.7, 0.8, 0.2, 0.9], [0, 0, 1, 1, 1, 1], split="test", training_seconds=12.5
    )
    assert not report.collapsed and report.collapse_message is None
    assert report.baseline_prior == pytest.approx([1 / 3, 2 / 3])
    # The baseline always calls the training majority, PNEUMONIA: sensitivity 1, specificity 0.
    assert report.baseline.metrics["sensitivity"] == 1.0
    assert report.baseline.metrics["specificity"] == 0.0
    assert report.baseline.metrics["auc"] == pytest.approx(0.5)
    assert report.baseline.confusion_matrix == [[0, 2], [0, 4]]
    # Each kind most confident first.
    assert [(c.correct, c.index) for c in report.gallery] == [
        (True, 5), (True, 0), (True, 3), (True, 2), (False, 4), (False, 1),
    ]  # fmt: skip
    assert report.gallery_films is not None and report.gallery_films.films.shape == (6, SIZE, SIZE)
    write_report(report, tmp_path)
    markdown = assert_report_files(tmp_path)
    assert "COLLAPSED" not in markdown
    assert "| Accuracy | 0.6667 |" in markdown
    assert "12.5" in markdown
    again = read_report(tmp_path)
    assert again.model_dump() == report.model_dump() and again.gallery_films is None
    rewritten = tmp_path / "again"
    write_report(again, rewritten)
    assert not (rewritten / "gradcam_gallery.png").exists()  # pixels never went into report.json


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(EvaluationError, match="labels"):
        _evaluate([0.1, 0.9], [0, 2])
    with pytest.raises(EvaluationError, match="threshold"):
        _evaluate([0.1, 0.9], [0, 1], positive_index=None)
    with pytest.raises(ValueError, match="float32"):
        run_timed(lambda batch: (batch, batch), _films(2).astype(np.float64), 4)
    with pytest.raises(ValueError, match=r"\[N >= 1, 1, H, W\]"):
        run_timed(lambda batch: (batch, batch), _films(2)[:, 0], 4)
