"""Run folder -> ``models/<name>/<version>/{model.onnx, model_card.json}``, verified before publishing."""

import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from service.contract import DecisionThreshold, ModelCard, OodDetector, PixelContract, ShiftBenchmark
from service.contract.model_card import (
    CAM_OUTPUT,
    INPUT_NAME,
    ONNX_FILENAME,
    OOD_OUTPUT,
    PROBABILITIES_OUTPUT,
)
from training.backbones.factory import Classifier
from training.config import AugmentConfig
from training.data.augment import LAYOUT_KEEPING, RandAcquisition
from training.data.dataset import FilmDataset
from training.export.gradcam_graph import ExportGraph
from training.export.staging import check_free, git_commit, sha256_file, staged_version, write_card
from training.fit import run_folder
from training.fit.checkpoint import SplitData, load_split, load_trained_model
from training.ood.statistics import METHOD as OOD_METHOD
from training.ood.statistics import (
    VALIDATION_QUANTILE,
    OodStatistics,
    fit_ood_statistics,
    validation_threshold,
)
from training.stats.metrics import check_not_collapsed

log = logging.getLogger(__name__)

OPSET = 18
# The share of training and validation films that get an annotated, shifted copy for the OOD fit.
ANNOTATED_SHARE = 0.25
# Training films the OOD Gaussians are fitted on (a seeded draw): enough for 1,280 features with shrinkage.
OOD_TRAIN_FILMS = 2000
PARITY_TOLERANCE = 1e-4


class ExportParityError(RuntimeError):
    pass


def export_onnx(
    model: Classifier,
    image_size: int,
    path: Path,
    temperature: float = 1.0,
    ood: OodStatistics | None = None,
) -> None:
    graph = ExportGraph(model, temperature, ood).eval()
    example = torch.zeros(2, 1, image_size, image_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    outputs = [PROBABILITIES_OUTPUT, CAM_OUTPUT] + ([OOD_OUTPUT] if ood is not None else [])
    torch.onnx.export(
        graph,
        (example,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=outputs,
        opset_version=OPSET,
        dynamic_shapes={"image": {0: batch}},
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    onnx.checker.check_model(str(path), full_check=True)


def check_parity(model: Classifier, onnx_path: Path, inputs: np.ndarray, temperature: float = 1.0) -> float:
    """Max |probability difference| between ONNX Runtime and PyTorch; raises above the tolerance."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_probabilities = session.run([PROBABILITIES_OUTPUT], {INPUT_NAME: inputs})[0]
    with torch.no_grad():
        torch_probabilities = torch.softmax(model(torch.from_numpy(inputs)) / temperature, dim=1).numpy()
    difference = float(np.max(np.abs(onnx_probabilities - torch_probabilities)))
    if difference > PARITY_TOLERANCE:
        raise ExportParityError(f"ONNX Runtime and PyTorch probabilities differ by {difference:.2e}")
    return difference


def with_annotated(films: FilmDataset, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The films plus annotated (and mostly acquisition-shifted) copies of ``count`` of them: real films
    carry burned-in text, markers, rulers and wires, and come from other detectors, so the gate must
    know them as films. Uses the training augmentation's own transforms, without crops and borders:
    framed copies (zoom, border, tilt) join in ``fit_ood_statistics``, beside the layout check that
    keeps half-films and thirds out (without it, framed copies let them pass: measured 2026-12-06)."""
    if count <= 0 or len(films) == 0:
        return films.inputs, films.labels
    chosen = torch.from_numpy(np.random.default_rng(seed).permutation(len(films))[: min(count, len(films))])
    config = AugmentConfig(acquisition=0.7, acquisition_ops=2, annotations=1.0)
    copies = RandAcquisition(config, seed, LAYOUT_KEEPING)(films.inputs[chosen])
    return torch.cat([films.inputs, copies]), torch.cat([films.labels, films.labels[chosen]])


def fit_ood(
    model: Classifier, data: SplitData, num_classes: int, annotated_share: float = ANNOTATED_SHARE
) -> tuple[OodStatistics, OodDetector]:
    """Statistics from the training films, the threshold from the validation films; both sets hold
    annotated and shifted copies of ``annotated_share`` of their films."""
    train_inputs, train_labels = with_annotated(data.train, round(annotated_share * len(data.train)), 0)
    val_inputs, _ = with_annotated(data.validation, round(annotated_share * len(data.validation)), 1)
    stats, val_scores = fit_ood_statistics(model, train_inputs, train_labels, val_inputs, num_classes)
    threshold = validation_threshold(val_scores)
    detector = OodDetector(
        method=OOD_METHOD,
        threshold=threshold,
        validation_quantile=VALIDATION_QUANTILE,
        validation_rejection_rate=float((val_scores > threshold).double().mean()),
    )
    return stats, detector


def _parity_inputs(validation: FilmDataset, image_size: int, count: int = 8) -> np.ndarray:
    """Real validation films plus noise, so parity is checked on what will be served and beyond."""
    noise = np.random.default_rng(0).random((2, 1, image_size, image_size), dtype=np.float32)
    films = validation.inputs[:count].numpy()
    return np.concatenate([films, noise])


def _card_threshold(summary: run_folder.RunSummary) -> DecisionThreshold | None:
    """The run's operating point with its validation sensitivity and specificity, measured there."""
    threshold = summary.decision_threshold
    if threshold is None:
        return None
    metrics = summary.validation_metrics
    return threshold.model_copy(
        update={
            "validation_sensitivity": metrics.get("sensitivity"),
            "validation_specificity": metrics.get("specificity"),
        }
    )


def export_run(
    run_dir: Path,
    store: Path,
    name: str,
    version: str | None = None,
    ood: bool = True,
    *,
    shift_benchmark: ShiftBenchmark | None = None,
    annotated_share: float = ANNOTATED_SHARE,
) -> Path:
    """Export a finished run into the store and return the new version folder.

    ``ood=False`` leaves out the out-of-distribution detector (no ``ood_score`` output): only for
    models whose validation split is too small to set its threshold. ``shift_benchmark``: the
    checkpoint's shift benchmark (``training.evaluation.shift_report.checkpoint_benchmark``), recorded
    in the card. ``annotated_share``: the share of films copied with annotations for the OOD fit
    (0 for toy models whose few synthetic films would make the copies the whole distribution).
    """
    model, config, summary = load_trained_model(run_dir)
    check_not_collapsed(summary.validation_metrics, summary.class_names, f"run {run_dir.name}")
    version = version or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = store / name / version
    check_free(target)
    data = load_split(run_dir, summary.class_names, summary.image_size, train_limit=OOD_TRAIN_FILMS)
    stats, detector = fit_ood(model, data, len(summary.class_names), annotated_share) if ood else (None, None)
    if detector is not None:
        log.info(
            "OOD threshold %.3f rejects %.2f %% of validation films",
            detector.threshold,
            100 * detector.validation_rejection_rate,
        )
    with staged_version(target) as staging:
        onnx_path = staging / ONNX_FILENAME
        export_onnx(model, summary.image_size, onnx_path, temperature=summary.temperature, ood=stats)
        parity_inputs = _parity_inputs(data.validation, summary.image_size)
        difference = check_parity(model, onnx_path, parity_inputs, summary.temperature)
        log.info("ONNX parity: max |p_onnx - p_torch| = %.2e", difference)
        card = ModelCard(
            name=name,
            version=version,
            created_at=datetime.now(UTC),
            git_commit=git_commit(),
            architecture=summary.backbone,
            weights=summary.weights,
            class_names=summary.class_names,
            pixel_contract=PixelContract(height=summary.image_size, width=summary.image_size),
            training_data=summary.training_data,
            validation_metrics=summary.validation_metrics,
            majority_baseline=summary.majority_baseline,
            decision_threshold=_card_threshold(summary),
            calibration=summary.calibration,
            ood=detector,
            onnx_sha256=sha256_file(onnx_path),
            opset=OPSET,
            intended_population=config.intended_population,
            shift_benchmark=shift_benchmark,
        )
        write_card(staging, card)
        shutil.copy2(run_dir / run_folder.CONFIG_FILE, staging / run_folder.EXPORTED_CONFIG_FILE)
    log.info("exported %s (%s) to %s", name, version, target)
    return target
