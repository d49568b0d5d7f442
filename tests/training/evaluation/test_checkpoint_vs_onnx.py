"""The issue's promise: the tiny run's checkpoint (PyTorch) and its exported ONNX model, evaluated by
the same code on the same films, give the same report."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from service.contract.model_card import CARD_FILENAME
from tests.training.evaluation.report_files import assert_report_files
from training.evaluation import EvaluationError, OnnxPredictor, TorchPredictor, evaluate_run
from training.fit.checkpoint import load_split, load_trained_model

PROBABILITY_TOLERANCE = 1e-5
CAM_RELATIVE_TOLERANCE = 1e-4  # of the largest map value: float32 kernels differ in summation order


def test_predictors_agree_on_probabilities_and_cams(tiny_run_dir: Path, tiny_model_dir: Path) -> None:
    model, _, summary = load_trained_model(tiny_run_dir)
    films = load_split(tiny_run_dir, summary.class_names, summary.image_size).validation.inputs.numpy()
    ours = TorchPredictor(model, summary.temperature).predict(films, batch_size=3)
    onnx = OnnxPredictor(tiny_model_dir, flops_reference=model).predict(films, batch_size=5)
    assert ours.probabilities.dtype == np.float64 and ours.cams.dtype == np.float32
    assert ours.probabilities.shape == (len(films), 2)
    assert ours.cams.shape[:2] == (len(films), 2) and ours.cams.shape == onnx.cams.shape
    np.testing.assert_allclose(ours.probabilities, onnx.probabilities, atol=PROBABILITY_TOLERANCE)
    scale = float(np.abs(ours.cams).max())
    assert scale > 0
    np.testing.assert_allclose(ours.cams, onnx.cams, atol=CAM_RELATIVE_TOLERANCE * scale)
    assert ours.seconds_per_image > 0 and onnx.seconds_per_image > 0


def test_checkpoint_and_exported_model_give_the_same_report(
    tiny_run_dir: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    torch_report = evaluate_run(tiny_run_dir, "validation", out_dir=tmp_path / "torch")
    onnx_report = evaluate_run(tiny_run_dir, "validation", tiny_model_dir, tmp_path / "onnx")
    assert (torch_report.model.kind, onnx_report.model.kind) == ("pytorch", "onnx")
    assert torch_report.n == onnx_report.n > 0
    assert torch_report.threshold == onnx_report.threshold
    assert torch_report.scores.confusion_matrix == onnx_report.scores.confusion_matrix
    for name, value in torch_report.scores.metrics.items():
        other = onnx_report.scores.metrics[name]
        if value is None:
            assert other is None, name
        else:
            assert other == pytest.approx(value, abs=1e-6), name
    assert torch_report.scores.metrics["auc"] is not None
    assert torch_report.baseline == onnx_report.baseline
    assert [c.index for c in torch_report.gallery] == [c.index for c in onnx_report.gallery]
    for name, interval in torch_report.confidence_intervals.items():
        assert onnx_report.confidence_intervals[name].low == pytest.approx(interval.low, abs=1e-6), name
    # Cost: the same architecture, counted two ways; FLOPs from the checkpoint for both.
    assert torch_report.complexity.parameters > 0 and onnx_report.complexity.parameters > 0
    assert torch_report.complexity.flops_per_image == onnx_report.complexity.flops_per_image
    assert (torch_report.complexity.flops_per_image or 0) > 0
    assert torch_report.training_seconds is not None and torch_report.training_seconds > 0
    assert torch_report.timing.ms_per_image > 0
    for out_dir in (tmp_path / "torch", tmp_path / "onnx"):
        assert_report_files(out_dir)


def test_missing_test_split_and_foreign_model_are_refused(
    tiny_run_dir: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    with pytest.raises(EvaluationError, match="no test split"):
        evaluate_run(tiny_run_dir, "test", out_dir=out_dir)
    with pytest.raises(EvaluationError, match="split must be one of"):
        evaluate_run(tiny_run_dir, "train", out_dir=out_dir)
    # A version whose card names other classes was not exported from this run.
    foreign = tmp_path / "foreign"
    shutil.copytree(tiny_model_dir, foreign)
    card = json.loads((foreign / CARD_FILENAME).read_text())
    card["class_names"] = card["class_names"][::-1]
    (foreign / CARD_FILENAME).write_text(json.dumps(card))
    with pytest.raises(EvaluationError, match="not exported from run"):
        evaluate_run(tiny_run_dir, "validation", foreign, out_dir)
    assert not out_dir.exists()


def test_an_exported_model_on_an_external_folder(
    tiny_model_dir: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    from training.cli import EXIT_USAGE, main
    from training.evaluation import read_report

    assert (
        main(
            ["evaluate", "--model", str(tiny_model_dir), "--data", str(tiny_dataset), "--out", str(tmp_path)]
        )
        == 0
    )
    report = read_report(tmp_path)
    assert report.n == 48 and report.split == f"external ({tiny_dataset.resolve()})"
    assert report.model.kind == "onnx"
    card = OnnxPredictor(tiny_model_dir).card
    train = card.training_data.splits["train"].per_class
    expected_prior = [train[name] / sum(train.values()) for name in card.class_names]
    assert report.baseline_prior == pytest.approx(expected_prior)
    assert card.decision_threshold is not None and report.threshold == card.decision_threshold.value
    # --data needs an exported model and no run: the films must not be mistaken for a run's split.
    assert main(["evaluate", "--data", str(tiny_dataset), "--out", str(tmp_path / "x")]) == EXIT_USAGE
