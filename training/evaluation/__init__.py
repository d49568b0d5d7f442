"""One evaluation for a PyTorch checkpoint and an exported ONNX model: metrics with bootstrap
intervals beside the majority-class baseline, calibration, cost, and a report folder with figures.

``evaluate`` takes any ``Predictor``; ``evaluate_run`` re-reads a run's split and writes the report;
``evaluate_folder`` scores an exported model on an external labelled folder.
"""

from training.evaluation.evaluator import (
    SPLITS,
    EvaluationError,
    default_out_dir,
    evaluate,
    evaluate_folder,
    evaluate_run,
)
from training.evaluation.predictors import OnnxPredictor, Predictions, Predictor, TorchPredictor
from training.evaluation.report import read_report, write_report
from training.evaluation.results import EvaluationReport

__all__ = [
    "SPLITS",
    "EvaluationError",
    "EvaluationReport",
    "OnnxPredictor",
    "Predictions",
    "Predictor",
    "TorchPredictor",
    "default_out_dir",
    "evaluate",
    "evaluate_folder",
    "evaluate_run",
    "read_report",
    "write_report",
]
