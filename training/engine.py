"""The training run: split by patient, two phases (frozen backbone, then full fine-tune),
class-weighted loss, early stopping on validation AUC, and the collapse guard at the end."""

import copy
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from service.contract import DecisionThreshold, SplitSummary, TrainingDataSummary
from training import run_folder
from training.augment import RandAffineIntensity
from training.backbones import Classifier, create_model
from training.config import TrainConfig
from training.data.dataset import FilmDataset
from training.data.scan import Sample, scan_folder
from training.data.split import split_by_patient
from training.metrics import (
    Metrics,
    check_not_collapsed,
    classification_metrics,
    format_metric,
    majority_baseline,
    youden_threshold,
)
from training.plots import plot_training_curves

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Phase:
    name: str
    epochs: int
    lr: float
    freeze_features: bool


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    summary: run_folder.RunSummary


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def positive_index(class_names: list[str], positive_class: str | None) -> int | None:
    if len(class_names) != 2:
        return None
    if positive_class is not None:
        if positive_class not in class_names:
            raise ValueError(f"positive_class {positive_class!r} is not one of {class_names}")
        return class_names.index(positive_class)
    normals = [i for i, name in enumerate(class_names) if name.lower() == "normal"]
    return 1 - normals[0] if normals else 1


def summarise_split(samples: list[Sample], class_names: list[str]) -> SplitSummary:
    counts = Counter(s.label for s in samples)
    return SplitSummary(
        images=len(samples),
        patients=len({s.patient for s in samples}),
        per_class={name: counts.get(i, 0) for i, name in enumerate(class_names)},
    )


@torch.no_grad()
def predict_probabilities(model: nn.Module, inputs: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    model.eval()
    chunks = [
        torch.softmax(model(inputs[i : i + batch_size]), dim=1) for i in range(0, len(inputs), batch_size)
    ]
    return torch.cat(chunks).double().numpy()


def _set_phase(model: Classifier, phase: Phase) -> list[nn.Parameter]:
    for parameter in model.features.parameters():
        parameter.requires_grad = not phase.freeze_features
    return [p for p in model.parameters() if p.requires_grad]


def _train_mode(model: Classifier, phase: Phase) -> None:
    model.train()
    if phase.freeze_features:
        model.features.eval()  # frozen backbone keeps its BatchNorm statistics too


def _train_epoch(
    *,
    model: Classifier,
    loader: DataLoader[tuple[torch.Tensor, int]],
    phase: Phase,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    augment: RandAffineIntensity,
    max_steps: int | None,
    description: str,
) -> float:
    _train_mode(model, phase)
    total, count = 0.0, 0
    steps = len(loader) if max_steps is None else min(max_steps, len(loader))
    bar = tqdm(loader, total=steps, desc=description, leave=False, dynamic_ncols=True)
    for step, (images, labels) in enumerate(bar):
        if step >= steps:
            break
        loss = loss_fn(model(augment(images)), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(labels)
        count += len(labels)
        bar.set_postfix(loss=f"{total / count:.4f}")
    bar.close()
    return total / max(count, 1)


@dataclass(frozen=True)
class _Data:
    class_names: list[str]
    positive: int | None
    summary: TrainingDataSummary
    train_set: FilmDataset
    val_set: FilmDataset
    baseline: Metrics


@dataclass(frozen=True)
class _Fit:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    epochs_run: int


def _prepare_data(config: TrainConfig, run_dir: Path) -> _Data:
    """Scan, split by patient (refusing leakage), record the split, preprocess every film once."""
    scanned = scan_folder(config.data_dir, config.patient_pattern)
    class_names = scanned.class_names
    positive = positive_index(class_names, config.positive_class)
    split = split_by_patient(scanned.samples, config.val_fraction, config.seed)
    run_folder.write_split(run_dir, split, class_names)
    summary = TrainingDataSummary(
        source=str(config.data_dir),
        split_method=f"by patient, stratified, val_fraction={config.val_fraction}, "
        f"pattern={config.patient_pattern!r}, no duplicate content across splits",
        seed=config.seed,
        splits={
            "train": summarise_split(split.train, class_names),
            "validation": summarise_split(split.validation, class_names),
        },
    )
    log.info("run folder %s; split %s", run_dir, {k: v.per_class for k, v in summary.splits.items()})
    started = time.perf_counter()
    size = config.image_size
    train_set, val_set = FilmDataset(split.train, size, size), FilmDataset(split.validation, size, size)
    log.info("preprocessed %d films in %.1f s", len(train_set) + len(val_set), time.perf_counter() - started)
    baseline = majority_baseline(train_set.labels.numpy(), val_set.labels.numpy(), len(class_names), positive)
    return _Data(class_names, positive, summary, train_set, val_set, baseline)


def _loss(config: TrainConfig, data: _Data) -> nn.CrossEntropyLoss:
    """Cross-entropy, weighted by inverse class frequency so the minority class is not ignored."""
    if not config.class_weighted_loss:
        return nn.CrossEntropyLoss()
    labels = data.train_set.labels.numpy()
    counts = np.bincount(labels, minlength=len(data.class_names)).astype(np.float64)
    weights = len(labels) / (len(data.class_names) * np.maximum(counts, 1))
    return nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))


def _fit(config: TrainConfig, model: Classifier, data: _Data, run_dir: Path) -> _Fit:
    """Both phases with early stopping on validation AUC; the best state is kept and checkpointed."""
    loss_fn = _loss(config, data)
    loader = DataLoader(
        data.train_set,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(data.train_set) > config.batch_size,
        generator=torch.Generator().manual_seed(config.seed),
    )
    augment = RandAffineIntensity(config.augment, config.seed + 1)
    val_labels = data.val_set.labels.numpy()
    phases = [
        Phase("head", config.head_epochs, config.head_lr, freeze_features=True),
        Phase("finetune", config.finetune_epochs, config.finetune_lr, freeze_features=False),
    ]
    history: list[dict[str, Any]] = []
    best_auc, best_epoch, best_state = -1.0, 0, copy.deepcopy(model.state_dict())
    epoch = 0
    for phase in (p for p in phases if p.epochs > 0):
        optimizer = torch.optim.AdamW(_set_phase(model, phase), lr=phase.lr, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=phase.epochs)
        stale = 0
        for _ in range(phase.epochs):
            epoch += 1
            epoch_start = time.perf_counter()
            train_loss = _train_epoch(
                model=model,
                loader=loader,
                phase=phase,
                optimizer=optimizer,
                loss_fn=loss_fn,
                augment=augment,
                max_steps=config.max_steps_per_epoch,
                description=f"epoch {epoch} ({phase.name})",
            )
            scheduler.step()
            val_metrics = classification_metrics(
                val_labels, predict_probabilities(model, data.val_set.inputs), data.positive
            )
            row = {
                "epoch": epoch,
                "phase": phase.name,
                "lr": phase.lr,
                "train_loss": train_loss,
                **{f"val_{k}": v for k, v in val_metrics.items()},
                "baseline_accuracy": data.baseline["accuracy"],
                "seconds": time.perf_counter() - epoch_start,
            }
            history.append(row)
            run_folder.write_history(run_dir, history)
            plot_training_curves(history, run_dir / run_folder.CURVES_PNG)
            log.info(
                "epoch %d %s: train loss %.4f, val AUC %s, val acc %s (majority %s), %.0f s",
                epoch,
                phase.name,
                train_loss,
                format_metric(val_metrics["auc"]),
                format_metric(val_metrics["accuracy"]),
                format_metric(data.baseline["accuracy"]),
                row["seconds"],
            )
            if (val_metrics["distinct_predicted_classes"] or 0) < 2:
                log.warning("epoch %d: validation predictions collapsed to one class", epoch)
            epoch_auc = val_metrics["auc"] if val_metrics["auc"] is not None else 0.0
            if epoch_auc > best_auc + 1e-4:
                best_auc, best_epoch, stale = epoch_auc, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
                torch.save(best_state, run_dir / run_folder.CHECKPOINT)
            else:
                stale += 1
                if stale >= config.patience:
                    log.info("early stop of phase %s: no AUC gain for %d epochs", phase.name, stale)
                    break
    return _Fit(best_state, best_epoch, epoch)


def _operating_point(data: _Data, probabilities: np.ndarray) -> DecisionThreshold | None:
    if data.positive is None:
        return None
    value = youden_threshold(data.val_set.labels.numpy(), probabilities[:, data.positive], data.positive)
    return DecisionThreshold(
        positive_class=data.class_names[data.positive],
        value=value,
        method="Youden's J (max sensitivity + specificity - 1) on validation",
    )


def train(config: TrainConfig) -> RunResult:
    """Run the whole recipe and leave a run folder; raises ``CollapsedModelError`` after writing it."""
    seed_everything(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    run_dir = run_folder.create_run_dir(config)
    started = time.perf_counter()
    data = _prepare_data(config, run_dir)
    built = create_model(config.backbone, len(data.class_names), config.weights)
    log.info("backbone %s, initial weights: %s", config.backbone, built.weights.description)
    fit = _fit(config, built.model, data, run_dir)
    train_seconds = time.perf_counter() - started

    built.model.load_state_dict(fit.best_state)
    probabilities = predict_probabilities(built.model, data.val_set.inputs)
    threshold = _operating_point(data, probabilities)
    final = classification_metrics(
        data.val_set.labels.numpy(), probabilities, data.positive, threshold.value if threshold else None
    )
    summary = run_folder.RunSummary(
        backbone=config.backbone,
        weights=built.weights.description,
        image_size=config.image_size,
        class_names=data.class_names,
        training_data=data.summary,
        best_epoch=fit.best_epoch,
        epochs_run=fit.epochs_run,
        train_seconds=train_seconds,
        validation_metrics=final,
        majority_baseline=data.baseline,
        decision_threshold=threshold,
    )
    run_folder.write_summary(run_dir, summary)
    # The guard judges the predictions the service would return: at the threshold for binary models.
    check_not_collapsed(final, data.class_names, "validation, at the operating point")
    return RunResult(run_dir, summary)
