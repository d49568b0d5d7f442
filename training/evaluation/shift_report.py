"""The shift benchmark of a run (its PyTorch checkpoint) or of an exported model, written as a report
folder: ``shift.json``, ``shift.md`` and ``shift.png``."""

from pathlib import Path

import numpy as np
import torch

from service.contract import ShiftBenchmark
from training.evaluation.evaluator import EvaluationError
from training.evaluation.predictors import OnnxPredictor
from training.evaluation.shift_benchmark import (
    choose_films,
    headline,
    plot_benchmark,
    shift_benchmark,
    summary_rows,
)
from training.fit.checkpoint import load_trained_model, split_samples
from training.fit.trainer import predict_probabilities

SHIFT_JSON, SHIFT_MD, SHIFT_PNG = "shift.json", "shift.md", "shift.png"


def shift_report(run_dir: Path | None, model_dir: Path | None, out: Path, split: str, films: int) -> str:
    """Run the benchmark on ``films`` films of the run's ``split``; returns the Markdown written."""
    if run_dir is None:
        raise EvaluationError(
            "--shift needs --run (the films come from its split); add --model for the ONNX graph"
        )
    model, _, summary = load_trained_model(run_dir)
    threshold = summary.decision_threshold
    if threshold is None:
        raise EvaluationError("--shift needs a binary model with an operating point")
    names = summary.class_names
    samples = split_samples(run_dir, names)[split]
    if not samples:
        raise EvaluationError(f"run {run_dir} has no {split} split")
    chosen = choose_films(samples, films, seed=1)
    positive, value = names.index(threshold.positive_class), threshold.value
    if model_dir is not None:
        predictor = OnnxPredictor(model_dir)
        card_threshold = predictor.card.decision_threshold
        value = card_threshold.value if card_threshold else value

        def predict(x: np.ndarray) -> np.ndarray:
            return predictor.predict(x).probabilities

        what = f"ONNX model {model_dir}"
    else:

        def predict(x: np.ndarray) -> np.ndarray:
            return predict_probabilities(model, torch.from_numpy(x), temperature=summary.temperature)

        what = f"checkpoint of run {run_dir}"
    benchmark = shift_benchmark(
        predict, chosen, size=summary.image_size, positive_index=positive, threshold=value
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / SHIFT_JSON).write_text(benchmark.model_dump_json(indent=2))
    plot_benchmark(benchmark, out / SHIFT_PNG)
    text = "\n".join(
        [
            f"# Shift benchmark: {what}",
            "",
            f"{benchmark.films} {split} films ({benchmark.per_source_films}), operating point "
            f"p({threshold.positive_class}) >= {value:.4f}. {headline(benchmark)}.",
            "",
            *summary_rows(benchmark),
            "",
            f"![shift]({SHIFT_PNG})",
        ]
    )
    (out / SHIFT_MD).write_text(text + "\n")
    return text


def checkpoint_benchmark(run_dir: Path, films: int) -> ShiftBenchmark | None:
    """The checkpoint's shift benchmark on ``films`` validation films, for the model card; None where
    there is nothing to measure (no films asked, no operating point, films inside array files)."""
    model, _, summary = load_trained_model(run_dir)
    threshold = summary.decision_threshold
    names = summary.class_names
    samples = [s for s in split_samples(run_dir, names)["validation"] if s.item is None]
    if films <= 0 or threshold is None or not samples:
        return None
    return shift_benchmark(
        lambda x: predict_probabilities(model, torch.from_numpy(x), temperature=summary.temperature),
        choose_films(samples, films, seed=1),
        size=summary.image_size,
        positive_index=names.index(threshold.positive_class),
        threshold=threshold.value,
    )
