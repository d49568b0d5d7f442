"""Everything a run leaves behind, in one folder: resolved config, split, per-epoch metrics,
curves, the best state dict and a summary that export turns into the model card."""

import csv
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.contract import Calibration, DecisionThreshold, TrainingDataSummary
from training.config import TrainConfig
from training.data.scan import Sample
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
    calibration: Calibration | None = None  # absent in runs written before temperature scaling
    training_processes: str = "1 process"
    test_metrics: dict[str, float | None] | None = Field(
        None, description="on the held-out test split at the validation operating point; None = no test split"
    )

    @property
    def temperature(self) -> float:
        return self.calibration.temperature if self.calibration is not None else 1.0


def create_run_dir(config: TrainConfig) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = config.output_dir / (config.run_name or f"{stamp}-{config.backbone}")
    run_dir.mkdir(parents=True, exist_ok=False)
    (run_dir / CONFIG_FILE).write_text(config.to_yaml())
    return run_dir


def write_split(run_dir: Path, split: Split, class_names: list[str]) -> None:
    with (run_dir / SPLIT_FILE).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["split", "path", "label", "patient", "sha256", "item", "source", "dhash"])
        for name, samples in split.parts().items():
            for s in samples:
                # Absolute, so export and reports work from any working directory.
                path = str(s.path.resolve())
                dhash = f"{s.dhash:064x}" if s.dhash is not None else ""
                writer.writerow(
                    [
                        name,
                        path,
                        class_names[s.label],
                        s.patient,
                        s.content_sha256,
                        s.item or "",
                        s.source,
                        dhash,
                    ]
                )


@dataclass(frozen=True)
class SplitRow:
    """One line of ``split.csv``: a film, its class name, its patient and which split it went to."""

    split: str  # "train", "validation" or "test"
    path: Path  # absolute
    label: str
    patient: str  # "" = none known
    sha256: str
    item: str | None = None  # a film inside the file at ``path`` (an .npz row, "train:12"); None = the file
    source: str = ""  # the source's name in a multi-source run; "" = single source
    dhash: int | None = None

    def sample(self, class_names: list[str]) -> Sample:
        return Sample(
            self.path,
            class_names.index(self.label),
            self.patient,
            self.sha256,
            self.item,
            self.source,
            self.dhash,
        )


def read_split(run_dir: Path) -> list[SplitRow]:
    """The rows ``write_split`` wrote, in order."""
    with (run_dir / SPLIT_FILE).open(newline="") as handle:
        return [
            # ``item`` is absent from split.csv files written before .npz sources existed.
            SplitRow(
                row["split"],
                Path(row["path"]),
                row["label"],
                row["patient"],
                row["sha256"],
                row.get("item") or None,
                row.get("source") or "",  # absent from split.csv files written before sources existed
                int(row["dhash"], 16) if row.get("dhash") else None,
            )
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
