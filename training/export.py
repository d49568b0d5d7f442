"""Run folder -> ``models/<name>/<version>/{model.onnx, model_card.json}``, verified before publishing."""

import hashlib
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from service.contract import DecisionThreshold, ModelCard, OodDetector, PixelContract, ShiftBenchmark
from service.contract.model_card import (
    CAM_OUTPUT,
    CARD_FILENAME,
    INPUT_NAME,
    ONNX_FILENAME,
    OOD_OUTPUT,
    PROBABILITIES_OUTPUT,
)
from training import run_folder
from training.augment import RandAcquisition
from training.backbones import Classifier, create_model
from training.config import AugmentConfig, TrainConfig
from training.data.dataset import FilmDataset
from training.data.scan import Sample
from training.gradcam_graph import ExportGraph
from training.metrics import check_not_collapsed
from training.ood import METHOD as OOD_METHOD
from training.ood import VALIDATION_QUANTILE, OodStatistics, fit_ood_statistics, validation_threshold
from training.shift_benchmark import choose_films, shift_benchmark
from training.trainer import predict_probabilities

log = logging.getLogger(__name__)

OPSET = 18
# The share of training and validation films that get an annotated, shifted copy for the OOD fit.
ANNOTATED_SHARE = 0.25
PARITY_TOLERANCE = 1e-4


class ExportParityError(RuntimeError):
    pass


def load_trained_model(run_dir: Path) -> tuple[Classifier, TrainConfig, run_folder.RunSummary]:
    """Rebuild the architecture and load the best checkpoint as a plain state dict."""
    config = TrainConfig.from_sources(run_dir / run_folder.CONFIG_FILE, {})
    summary = run_folder.read_summary(run_dir)
    model = create_model(config.backbone, len(summary.class_names), weights="none").model
    state = torch.load(run_dir / run_folder.CHECKPOINT, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval(), config, summary


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


@dataclass(frozen=True)
class SplitData:
    train: FilmDataset
    validation: FilmDataset


def split_samples(run_dir: Path, class_names: list[str]) -> dict[str, list[Sample]]:
    """The run's films per split ("train", "validation", "test"; test may be empty), not yet read."""
    rows: dict[str, list[Sample]] = {"train": [], "validation": [], "test": []}
    for row in run_folder.read_split(run_dir):
        rows[row.split].append(row.sample(class_names))
    return rows


def load_split(run_dir: Path, class_names: list[str], image_size: int) -> SplitData:
    """The run's own split, re-read through the contract: the films the model was fitted and tuned on."""
    rows = split_samples(run_dir, class_names)
    return SplitData(
        FilmDataset(rows["train"], image_size, image_size),
        FilmDataset(rows["validation"], image_size, image_size),
    )


def with_annotated(films: FilmDataset, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The films plus annotated (and mostly acquisition-shifted) copies of ``count`` of them: real films
    carry burned-in text, markers, rulers and wires, and come from other detectors, so the gate must
    know them as films. Uses the training augmentation's own transforms."""
    if count <= 0 or len(films) == 0:
        return films.inputs, films.labels
    chosen = torch.from_numpy(np.random.default_rng(seed).permutation(len(films))[: min(count, len(films))])
    config = AugmentConfig(acquisition=0.7, acquisition_ops=2, annotations=1.0)
    copies = RandAcquisition(config, seed)(films.inputs[chosen])
    return torch.cat([films.inputs, copies]), torch.cat([films.labels, films.labels[chosen]])


def fit_ood(model: Classifier, data: SplitData, num_classes: int) -> tuple[OodStatistics, OodDetector]:
    """Statistics from the training films, the threshold from the validation films; both sets hold
    annotated and shifted copies of a share of their films (``ANNOTATED_SHARE``)."""
    train_inputs, train_labels = with_annotated(data.train, round(ANNOTATED_SHARE * len(data.train)), 0)
    val_inputs, _ = with_annotated(data.validation, round(ANNOTATED_SHARE * len(data.validation)), 1)
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


def git_commit() -> str | None:
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def move_into_store(staging: Path, target: Path) -> None:
    """Publish a fully written staging folder as ``target`` in one rename.

    ``TemporaryDirectory`` creates the folder 0700; the service may run as another user (the
    container's uid 10001 reading a store written by a training job), so open it up first.
    """
    staging.chmod(0o755)
    staging.rename(target)


def _shift_benchmark(
    model: Classifier, run_dir: Path, summary: run_folder.RunSummary, films: int
) -> ShiftBenchmark | None:
    """The acquisition-shift benchmark of the checkpoint on ``films`` validation films, for the card."""
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


def export_run(
    run_dir: Path,
    store: Path,
    name: str,
    version: str | None = None,
    ood: bool = True,
    *,
    shift_films: int = 0,
) -> Path:
    """Export a finished run into the store and return the new version folder.

    ``ood=False`` leaves out the out-of-distribution detector (no ``ood_score`` output): only for
    models whose validation split is too small to set its threshold. ``shift_films`` > 0 runs the
    shift benchmark on that many validation films and records it in the card.
    """
    model, config, summary = load_trained_model(run_dir)
    check_not_collapsed(summary.validation_metrics, summary.class_names, f"run {run_dir.name}")
    version = version or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = store / name / version
    if target.exists():
        raise FileExistsError(f"{target} already exists; versions are immutable")
    target.parent.mkdir(parents=True, exist_ok=True)
    data = load_split(run_dir, summary.class_names, summary.image_size)
    stats, detector = fit_ood(model, data, len(summary.class_names)) if ood else (None, None)
    if detector is not None:
        log.info(
            "OOD threshold %.3f rejects %.2f %% of validation films",
            detector.threshold,
            100 * detector.validation_rejection_rate,
        )
    shifted = _shift_benchmark(model, run_dir, summary, shift_films)
    # Build in a sibling temp folder and rename: the service never sees a half-written version.
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{version}-") as staging_name:
        staging = Path(staging_name)
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
            shift_benchmark=shifted,
        )
        (staging / CARD_FILENAME).write_text(card.model_dump_json(indent=2))
        shutil.copy2(run_dir / run_folder.CONFIG_FILE, staging / run_folder.EXPORTED_CONFIG_FILE)
        move_into_store(staging, target)
    log.info("exported %s (%s) to %s", name, version, target)
    return target
