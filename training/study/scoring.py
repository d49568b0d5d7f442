"""One grid cell scored by the evaluation code every model goes through (``training.evaluation``):
on the held-out test split when the study has one, else on validation."""

from pathlib import Path
from typing import Any

from training.data.training_data import TrainingData
from training.evaluation import TorchPredictor, evaluate, write_report
from training.fit import run_folder
from training.fit.checkpoint import load_trained_model

# Fewer resamples than a single evaluation's default: a grid scores dozens of cells, and 500 already
# puts the interval ends within about 0.005 of their 1000-resample values.
GRID_BOOTSTRAP = 500


def score_cell(run_dir: Path, data: TrainingData) -> dict[str, Any]:
    """The fields of ``CellResult`` that come from the run and its evaluation."""
    model, _, summary = load_trained_model(run_dir)
    films = data.test_set if data.test_set is not None else data.val_set
    split = "test" if data.test_set is not None else "validation"
    threshold = summary.decision_threshold
    report = evaluate(
        TorchPredictor(
            model,
            summary.temperature,
            source=str(run_dir / run_folder.CHECKPOINT),
            architecture=summary.backbone,
        ),
        films.inputs.numpy(),
        films.labels.numpy(),
        summary.class_names,
        positive_index=data.positive,
        threshold=threshold.value if threshold else None,
        train_labels=data.train_set.labels.numpy(),
        split=split,
        training_seconds=summary.train_seconds,
        bootstrap=GRID_BOOTSTRAP,
    )
    write_report(report, run_dir / "evaluation")
    return {
        "weights": summary.weights,
        "report_split": split,
        "metrics": report.scores.metrics,
        "confidence_intervals": {k: (v.low, v.high) for k, v in report.confidence_intervals.items()},
        "majority_baseline": report.baseline.metrics,
        "validation_auc": summary.validation_metrics.get("auc"),
        "best_epoch": summary.best_epoch,
        "epochs_run": summary.epochs_run,
        "train_seconds": summary.train_seconds,
        "ms_per_image": report.timing.ms_per_image,
        "parameters": report.complexity.parameters,
        "flops_per_image": report.complexity.flops_per_image,
    }
