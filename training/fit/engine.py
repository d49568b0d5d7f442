"""The training run: load and split the films, fit (``training.fit.trainer``), then on validation fit
the temperature and the operating point, score the held-out test split, and apply the collapse
guard at the end."""

import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from service.contract import Calibration, DecisionThreshold
from training.backbones.factory import create_model
from training.config import TrainConfig
from training.data.scan import Sample
from training.data.split import Split
from training.data.training_data import TrainingData, load_data
from training.fit import distributed, run_folder
from training.fit.trainer import Trainer, predict_logits, resolve_device
from training.stats.calibration import (
    TEMPERATURE_METHOD,
    calibrated_probabilities,
    expected_calibration_error,
    fit_temperature,
    nll,
    operating_threshold,
)
from training.stats.metrics import (
    check_not_collapsed,
    classification_metrics,
    format_metric,
    per_source_metrics,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    summary: run_folder.RunSummary


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _calibrate(config: TrainConfig, logits: np.ndarray, labels: np.ndarray) -> Calibration | None:
    if not config.calibrate:
        return None
    temperature = fit_temperature(logits, labels)
    before, after = calibrated_probabilities(logits, 1.0), calibrated_probabilities(logits, temperature)
    return Calibration(
        method=TEMPERATURE_METHOD,
        temperature=temperature,
        validation_ece_before=expected_calibration_error(labels, before),
        validation_ece_after=expected_calibration_error(labels, after),
        validation_cross_entropy_before=nll(logits, labels, 1.0),
        validation_cross_entropy_after=nll(logits, labels, temperature),
    )


def _validation_threshold(
    config: TrainConfig, data: TrainingData, probabilities: np.ndarray
) -> DecisionThreshold | None:
    if data.positive is None:
        return None
    labels, sources = data.val_set.labels.numpy(), [s.source for s in data.split.validation]
    value, method = operating_threshold(
        labels, probabilities[:, data.positive], data.positive, config.target_sensitivity, sources
    )
    per_source = per_source_metrics(labels, probabilities, sources, data.positive, value)
    return DecisionThreshold(
        positive_class=data.class_names[data.positive],
        value=value,
        method=method,
        target_sensitivity=config.target_sensitivity,
        per_source=per_source if len(per_source) > 1 else None,
    )


def train(config: TrainConfig, data: TrainingData | None = None) -> RunResult:
    """Run the whole recipe and leave a run folder; raises ``CollapsedModelError`` after writing it.

    ``data``: films already loaded for an equal ``DATA_FIELDS`` config (the grid passes them on).
    """
    seed_everything(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config)
    processes = distributed.start(device.type)
    try:
        return _train(config, data, device, processes)
    finally:
        distributed.stop(processes)


def _train(
    config: TrainConfig, data: TrainingData | None, device: torch.device, processes: distributed.Processes
) -> RunResult:
    if processes.distributed and device.type == "cuda":
        device = torch.device("cuda", processes.local_rank)
    main = processes.is_main
    run_dir = Path(distributed.broadcast(str(run_folder.create_run_dir(config)) if main else "", processes))
    started = time.perf_counter()
    data = data if data is not None else load_data(config)
    if main:
        run_folder.write_split(run_dir, data.split, data.class_names)
    built = create_model(config.backbone, len(data.class_names), config.weights_request())
    log.info(
        "backbone %s, initial weights: %s; %s",
        config.backbone,
        built.weights.description,
        processes.describe(),
    )
    trainer = Trainer(config, built.model.to(device), data, run_dir, processes)
    fit = trainer.fit()
    model = built.model.cpu()
    model.load_state_dict(fit.best_state)
    outcome = FitOutcome(
        built.weights.description,
        fit.best_epoch,
        fit.epochs_run,
        time.perf_counter() - started,
        processes.describe(),
    )
    return _conclude(config, data, model, run_dir, outcome, write=main)


@dataclass(frozen=True)
class FitOutcome:
    """What the fit left for the summary."""

    weights: str
    best_epoch: int
    epochs_run: int
    train_seconds: float
    processes: str


def _conclude(
    config: TrainConfig, data: TrainingData, model: nn.Module, run_dir: Path, fit: FitOutcome, *, write: bool
) -> RunResult:
    """On validation: temperature, operating point, metrics; the test split; the summary and the guard."""
    val_labels = data.val_set.labels.numpy()
    logits = predict_logits(model, data.val_set.inputs)
    calibration = _calibrate(config, logits, val_labels)
    temperature = calibration.temperature if calibration else 1.0
    probabilities = calibrated_probabilities(logits, temperature)
    threshold = _validation_threshold(config, data, probabilities)
    at = threshold.value if threshold else None
    final = classification_metrics(val_labels, probabilities, data.positive, at)
    for name, metrics in (threshold.per_source or {}).items() if threshold else ():
        log.info(
            "validation %s: %d films, AUC %s, sensitivity %s, specificity %s at the operating point",
            name,
            metrics.films,
            format_metric(metrics.auc),
            format_metric(metrics.sensitivity),
            format_metric(metrics.specificity),
        )
    test = None
    if data.test_set is not None:
        test_probabilities = calibrated_probabilities(
            predict_logits(model, data.test_set.inputs), temperature
        )
        test = classification_metrics(data.test_set.labels.numpy(), test_probabilities, data.positive, at)
    summary = run_folder.RunSummary(
        backbone=config.backbone,
        weights=fit.weights,
        image_size=config.image_size,
        class_names=data.class_names,
        training_data=data.summary,
        best_epoch=fit.best_epoch,
        epochs_run=fit.epochs_run,
        train_seconds=fit.train_seconds,
        validation_metrics=final,
        majority_baseline=data.baseline,
        decision_threshold=threshold,
        calibration=calibration,
        test_metrics=test,
        training_processes=fit.processes,
    )
    if write:
        run_folder.write_summary(run_dir, summary)
    # The guard judges the predictions the service would return: at the threshold for binary models.
    check_not_collapsed(final, data.class_names, "validation, at the operating point")
    return RunResult(run_dir, summary)


def finish(run_dir: Path) -> RunResult:
    """Conclude a run whose fit was stopped (killed, out of time) from its best checkpoint so far:
    the same calibration, operating point, summary and collapse guard as a run that ended itself.

    The films are read and split again from the run's config, and must give the split it recorded.
    """
    config = TrainConfig.from_sources(run_dir / run_folder.CONFIG_FILE, {})
    history_path = run_dir / run_folder.HISTORY_JSON
    history = json.loads(history_path.read_text()) if history_path.is_file() else []
    if not history or not (run_dir / run_folder.CHECKPOINT).is_file():
        raise FileNotFoundError(f"{run_dir} has no finished epoch and checkpoint to conclude from")
    best = max(history, key=lambda row: row.get("val_auc") or 0.0)
    summary_path = run_dir / run_folder.SUMMARY
    if summary_path.is_file():
        raise FileExistsError(f"{run_dir} already has its summary; nothing to finish")
    data = load_data(config, _recorded_split(run_dir, config))
    built = create_model(config.backbone, len(data.class_names), config.weights_request())
    state = torch.load(run_dir / run_folder.CHECKPOINT, map_location="cpu", weights_only=True)
    built.model.load_state_dict(state)
    seconds = float(sum(row.get("seconds", 0.0) for row in history))
    outcome = FitOutcome(
        built.weights.description,
        int(best["epoch"]),
        len(history),
        seconds,
        f"1 process; concluded by `python -m training finish` after {len(history)} epoch(s)",
    )
    return _conclude(config, data, built.model.eval(), run_dir, outcome, write=True)


def _recorded_split(run_dir: Path, config: TrainConfig) -> tuple[list[str], Split, str]:
    """The split the run recorded, as samples, with a description of its sources."""
    rows = run_folder.read_split(run_dir)
    class_names = config.class_names or sorted({row.label for row in rows})
    parts: dict[str, list[Sample]] = {"train": [], "validation": [], "test": []}
    for row in rows:
        parts[row.split].append(row.sample(class_names))
    counts = Counter(row.source or "data" for row in rows)
    source = "; ".join(f"{name} ({count} films)" for name, count in counts.items())
    split = Split(parts["train"], parts["validation"], parts["test"])
    return class_names, split, f"sources: {source} (as recorded in split.csv)"
