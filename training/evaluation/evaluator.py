"""The one evaluation, whichever way the model runs: predictions -> scores, intervals, baseline,
calibration, cost and gallery -> ``EvaluationReport``."""

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from service.contract import SourceMetrics
from service.contract.model_card import binary_threshold
from training.data.dataset import FilmDataset
from training.evaluation.bootstrap import DEFAULT_RESAMPLES, bootstrap_intervals
from training.evaluation.films import EvaluationFilmsError, films_from_folder
from training.evaluation.gallery import PER_KIND, choose_gallery, gallery_films
from training.evaluation.predictors import DEFAULT_BATCH_SIZE, Films, OnnxPredictor, Predictor, TorchPredictor
from training.evaluation.report import write_report
from training.evaluation.results import BootstrapSettings, EvaluationReport, ModelIdentity, Timing
from training.evaluation.scores import score
from training.fit import run_folder
from training.fit.checkpoint import load_trained_model, split_samples
from training.stats.metrics import (
    IntArray,
    card_train_labels,
    class_prior,
    decision_rule,
    per_source_metrics,
    predict_labels,
)

log = logging.getLogger(__name__)

SPLITS = ("validation", "test")


class EvaluationError(ValueError):
    """The evaluation cannot be run as asked; the message says why."""


def evaluate(
    predictor: Predictor,
    films: Films,
    labels: IntArray,
    class_names: Sequence[str],
    *,
    positive_index: int | None,
    threshold: float | None,
    train_labels: IntArray,
    split: str = "validation",
    training_seconds: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    bootstrap: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    gallery_per_kind: int = PER_KIND,
    sources: Sequence[str] | None = None,
) -> EvaluationReport:
    """Run ``predictor`` on ``films`` [N, 1, H, W] and measure it against ``labels`` [N].

    ``threshold`` applies to p(``positive_index``) of a binary model (None = argmax, as in
    ``training.stats.metrics.predict_labels``). ``train_labels`` set the majority-class baseline.
    Long because the report is assembled field by field here; the work is in ``score``,
    ``bootstrap_intervals`` and the gallery.
    """
    names = list(class_names)
    labels = np.asarray(labels, dtype=np.int64)
    train_labels = np.asarray(train_labels, dtype=np.int64)
    _check_labels(labels, len(films), names, "labels")
    _check_labels(train_labels, len(train_labels), names, "train_labels")
    if threshold is not None and (positive_index is None or len(names) != 2):
        raise EvaluationError("a decision threshold needs a binary model and its positive class")
    predictions = predictor.predict(films, batch_size)
    probabilities = predictions.probabilities
    if probabilities.shape != (len(labels), len(names)):
        raise EvaluationError(f"the model gave probabilities {probabilities.shape} for {len(names)} classes")
    scores = score(labels, probabilities, names, positive_index, threshold)
    predicted = predict_labels(probabilities, positive_index, threshold)
    prior = class_prior(train_labels, len(names))
    # Same constant prediction as ``training.stats.metrics.majority_baseline``, scored in full.
    baseline = score(labels, np.tile(prior, (len(labels), 1)), names, positive_index, threshold=None)
    settings = BootstrapSettings(resamples=bootstrap, seed=seed)
    cases = choose_gallery(labels, predicted, probabilities, names, gallery_per_kind)
    accuracy = scores.metrics["accuracy"] or 0.0
    message = _collapse_message(predictor.identity, split, names, predicted, accuracy)
    if message is not None:
        log.warning("%s", message)
    report = EvaluationReport(
        created_at=datetime.now(UTC),
        model=predictor.identity,
        split=split,
        n=len(labels),
        class_names=names,
        positive_class=None if positive_index is None else names[positive_index],
        threshold=threshold,
        scores=scores,
        confidence_intervals=bootstrap_intervals(labels, probabilities, predicted, positive_index, settings),
        bootstrap=settings,
        baseline=baseline,
        baseline_prior=[float(p) for p in prior],
        timing=Timing(
            runtime=predictor.runtime,
            batch_size=predictions.batch_size,
            images_timed=len(labels),
            ms_per_image=1000.0 * predictions.seconds_per_image,
        ),
        complexity=predictor.complexity(films.shape[2], films.shape[3]),
        training_seconds=training_seconds,
        collapsed=scores.collapsed,
        collapse_message=message,
        gallery=cases,
        per_source=_per_source(labels, probabilities, sources, positive_index, threshold),
    )
    return report.with_gallery_films(gallery_films(films, predictions.cams, predicted, cases))


def _per_source(
    labels: IntArray,
    probabilities: np.ndarray,
    sources: Sequence[str] | None,
    positive_index: int | None,
    threshold: float | None,
) -> dict[str, SourceMetrics] | None:
    if sources is None or len(set(sources)) < 2:
        return None
    return per_source_metrics(labels, probabilities, sources, positive_index, threshold)


def _check_labels(labels: IntArray, expected: int, class_names: list[str], what: str) -> None:
    if labels.ndim != 1 or len(labels) != expected or expected == 0:
        raise EvaluationError(f"{what}: expected {expected} (at least one) labels, got shape {labels.shape}")
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise EvaluationError(f"{what}: labels must index the {len(class_names)} classes {class_names}")


def _collapse_message(
    identity: ModelIdentity, split: str, class_names: list[str], predicted: IntArray, accuracy: float
) -> str | None:
    called = np.unique(predicted)
    if len(called) >= 2:
        return None
    return (
        f"COLLAPSED MODEL: {identity.architecture or identity.kind} predicts {class_names[called[0]]} for "
        f"every one of the {len(predicted)} {split} films. Its accuracy {accuracy:.3f} is just that "
        "class's share of the films, what a constant answer scores; no metric here "
        "describes a working classifier. Check the learning rate, class weighting, labels and input "
        "preprocessing."
    )


def default_out_dir(run_dir: Path, split: str, identity: ModelIdentity) -> Path:
    """``<run>/evaluation/<split>-pytorch`` or ``<run>/evaluation/<split>-onnx-<name>-<version>``."""
    model = "pytorch" if identity.kind == "pytorch" else f"onnx-{identity.name}-{identity.version}"
    return run_dir / "evaluation" / f"{split}-{model}"


def evaluate_run(
    run_dir: Path,
    split: str = "validation",
    model_dir: Path | None = None,
    out_dir: Path | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    bootstrap: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> EvaluationReport:
    """Evaluate a finished run on its own ``split`` ("validation" or "test") and write the report.

    Without ``model_dir`` the run's checkpoint runs in PyTorch, at the run's temperature and decision
    threshold; with it, that store version's ONNX file runs in ONNX Runtime at its model card's
    threshold (the version must have been exported from this run). ``out_dir`` defaults to
    ``default_out_dir``.
    """
    if split not in SPLITS:
        raise EvaluationError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    model, _, summary = load_trained_model(run_dir)
    names = summary.class_names
    samples = split_samples(run_dir, names)
    if not samples[split]:  # the test split is optional, and absent in older runs
        raise EvaluationError(
            f"run {run_dir} has no {split} split (none recorded in {run_folder.SPLIT_FILE}); "
            "train with a test fraction to hold one out, or evaluate the validation split"
        )
    predictor: Predictor
    if model_dir is None:
        temperature = summary.temperature  # 1.0 for runs from before calibration
        source = str(run_dir / run_folder.CHECKPOINT)
        predictor = TorchPredictor(model, temperature, source=source, architecture=summary.backbone)
        threshold = summary.decision_threshold
    else:
        onnx_predictor = OnnxPredictor(model_dir, flops_reference=model)
        card = onnx_predictor.card
        if card.class_names != names or card.training_data != summary.training_data:
            raise EvaluationError(
                f"{model_dir} was not exported from run {run_dir} (its classes or data split differ "
                "from the run's), so the run's films may include its training films"
            )
        predictor, threshold = onnx_predictor, card.decision_threshold
    positive_index, value = decision_rule(threshold, names)
    evaluated = FilmDataset(samples[split], summary.image_size, summary.image_size)
    report = evaluate(
        predictor,
        evaluated.inputs.numpy().astype(np.float32),
        evaluated.labels.numpy().astype(np.int64),
        names,
        positive_index=positive_index,
        threshold=value,
        train_labels=np.array([s.label for s in samples["train"]], dtype=np.int64),
        split=split,
        training_seconds=summary.train_seconds,
        batch_size=batch_size,
        bootstrap=bootstrap,
        seed=seed,
        sources=[s.source for s in samples[split]],
    )
    write_report(report, out_dir or default_out_dir(run_dir, split, predictor.identity))
    return report


def evaluate_folder(
    model_dir: Path,
    data_dir: Path,
    out_dir: Path,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    bootstrap: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> EvaluationReport:
    """An exported model on an external labelled ``<root>/<CLASS>/*`` folder (another hospital's
    films, an official test set), at its card's operating point; no run folder needed.

    The majority-class baseline takes its prior from the card's training-split class counts.
    """
    predictor = OnnxPredictor(model_dir)
    card = predictor.card
    names = list(card.class_names)
    try:
        films = films_from_folder(data_dir, names)
        contract = card.pixel_contract
        inputs = films.inputs(contract.height, contract.width)
    except EvaluationFilmsError as exc:
        raise EvaluationError(str(exc)) from None
    train_labels = card_train_labels(card)
    if train_labels is None:
        raise EvaluationError(f"{model_dir}: the model card records no training split to set the baseline")
    positive_index, value = decision_rule(binary_threshold(card), names)
    report = evaluate(
        predictor,
        inputs,
        films.labels,
        names,
        positive_index=positive_index,
        threshold=value,
        train_labels=train_labels,
        split=f"external ({data_dir.resolve()})",
        batch_size=batch_size,
        bootstrap=bootstrap,
        seed=seed,
    )
    write_report(report, out_dir)
    return report
