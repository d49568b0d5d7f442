"""Everything a run leaves behind, in one folder: resolved config, split, per-epoch metrics,
curves, the best state dict and a summary that export turns into the model card."""

import csv
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from service.contract import DecisionThreshold, TrainingDataSummary
from training.config import TrainConfig
from training.data.split import Split

CONFIG_FILE = "config.yaml"
# The run's config.yaml as copied beside an exported model: how a store version finds its run again.
EXPORTED_CONFIG_FILE = "training_config.yaml"
SPLIT_FILE = "split.csv"
HISTORY_CSV = "metrics.csv"
HISTORY_JSON = "metrics.json"
CURVES_PNG = "training_curves.png"
CHECKPOINT = "best.pt"
SUMMARY = "summary.json"


class RunSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backbone: str
    weights: str
    image_size: int
    class_names: list[str]
    training_data: TrainingDataSummary
    best_epoch: int
    epochs_run: int
    train_seconds: float
    validation_metrics: dict[str, float | None]
    majority_baseline: dict[str, float | None]
    decision_threshold: DecisionThreshold | None


def create_run_dir(config: TrainConfig) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = config.output_dir / (config.run_name or f"{stamp}-{config.backbone}")
    run_dir.mkdir(parents=True, exist_ok=False)
    (run_dir / CONFIG_FILE).write_text(config.to_yaml())
    return run_dir


def write_split(run_dir: Path, split: Split, class_names: list[str]) -> None:
    with (run_dir / SPLIT_FILE).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["split", "path", "label", "patient", "sha256"])
        for name, samples in (("train", split.train), ("validation", split.validation)):
            for s in samples:
                # Absolute, so export and reports work from any working directory.
                path = str(s.path.resolve())
                writer.writerow([name, path, class_names[s.label], s.patient, s.content_sha256])


@dataclass(frozen=True)
class SplitRow:
    """One line of ``split.csv``: a film, its class name, its patient and which split it went to."""

    split: str  # "train" or "validation"
    path: Path  # absolute
    label: str
    patient: str
    sha256: str


def read_split(run_dir: Path) -> list[SplitRow]:
    """The rows ``write_split`` wrote, in order."""
    with (run_dir / SPLIT_FILE).open(newline="") as handle:
        return [
            SplitRow(row["split"], Path(row["path"]), row["label"], row["patient"], row["sha256"])
            for row in csv.DictReader(handle)
        ]


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    (run_dir / HISTORY_JSON).write_text(json.dumps(history, indent=2))
    columns = list(dict.fromkeys(key for row in history for key in row))
    with (run_dir / HISTORY_CSV).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def write_summary(run_dir: Path, summary: RunSummary) -> None:
    (run_dir / SUMMARY).write_text(summary.model_dump_json(indent=2))


def read_summary(run_dir: Path) -> RunSummary:
    return RunSummary.model_validate_json((run_dir / SUMMARY).read_text())
