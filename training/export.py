"""Run folder -> ``models/<name>/<version>/{model.onnx, model_card.json}``, verified before publishing."""

import csv
import hashlib
import logging
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from service.contract import ModelCard, PixelContract
from service.contract.model_card import (
    CAM_OUTPUT,
    CARD_FILENAME,
    INPUT_NAME,
    ONNX_FILENAME,
    PROBABILITIES_OUTPUT,
)
from training import run_folder
from training.backbones import Classifier, create_model
from training.config import TrainConfig
from training.data.dataset import load_input
from training.gradcam_graph import ExportGraph
from training.metrics import check_not_collapsed

log = logging.getLogger(__name__)

OPSET = 18
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


def export_onnx(model: Classifier, image_size: int, path: Path, temperature: float = 1.0) -> None:
    graph = ExportGraph(model, temperature).eval()
    example = torch.zeros(2, 1, image_size, image_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(
        graph,
        (example,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[PROBABILITIES_OUTPUT, CAM_OUTPUT],
        opset_version=OPSET,
        dynamic_shapes={"image": {0: batch}},
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    onnx.checker.check_model(str(path), full_check=True)


def check_parity(model: Classifier, onnx_path: Path, inputs: np.ndarray) -> float:
    """Max |probability difference| between ONNX Runtime and PyTorch; raises above the tolerance."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_probabilities = session.run([PROBABILITIES_OUTPUT], {INPUT_NAME: inputs})[0]
    with torch.no_grad():
        torch_probabilities = torch.softmax(model(torch.from_numpy(inputs)), dim=1).numpy()
    difference = float(np.max(np.abs(onnx_probabilities - torch_probabilities)))
    if difference > PARITY_TOLERANCE:
        raise ExportParityError(f"ONNX Runtime and PyTorch probabilities differ by {difference:.2e}")
    return difference


def _parity_inputs(run_dir: Path, image_size: int, count: int = 8) -> np.ndarray:
    """Real validation films (through the contract), so parity is checked on what will be served."""
    with (run_dir / run_folder.SPLIT_FILE).open() as handle:
        paths = [Path(row["path"]) for row in csv.DictReader(handle) if row["split"] == "validation"]
    films = [load_input(p, image_size, image_size) for p in paths[:count] if p.is_file()]
    noise = np.random.default_rng(0).random((2, 1, image_size, image_size), dtype=np.float32)
    return np.concatenate([np.stack(films), noise]) if films else noise


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


def export_run(run_dir: Path, store: Path, name: str, version: str | None = None) -> Path:
    """Export a finished run into the store and return the new version folder."""
    model, _, summary = load_trained_model(run_dir)
    check_not_collapsed(summary.validation_metrics, summary.class_names, f"run {run_dir.name}")
    version = version or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = store / name / version
    if target.exists():
        raise FileExistsError(f"{target} already exists; versions are immutable")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a sibling temp folder and rename: the service never sees a half-written version.
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{version}-") as staging_name:
        staging = Path(staging_name)
        onnx_path = staging / ONNX_FILENAME
        export_onnx(model, summary.image_size, onnx_path)
        difference = check_parity(model, onnx_path, _parity_inputs(run_dir, summary.image_size))
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
            decision_threshold=summary.decision_threshold,
            onnx_sha256=sha256_file(onnx_path),
            opset=OPSET,
        )
        (staging / CARD_FILENAME).write_text(card.model_dump_json(indent=2))
        shutil.copy2(run_dir / run_folder.CONFIG_FILE, staging / "training_config.yaml")
        staging.rename(target)
    log.info("exported %s (%s) to %s", name, version, target)
    return target
