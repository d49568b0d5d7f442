"""Real training runs on tiny synthetic data: what a run folder holds, and the collapse guard."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.factories import png_bytes
from training.cli import EXIT_COLLAPSED, main
from training.config import TrainConfig
from training.fit import run_folder
from training.fit.engine import train
from training.stats.metrics import CollapsedModelError


def test_run_folder_holds_config_split_history_curves_and_a_plain_state_dict(tiny_run_dir: Path) -> None:
    for name in (
        run_folder.CONFIG_FILE,
        run_folder.SPLIT_FILE,
        run_folder.HISTORY_CSV,
        run_folder.HISTORY_JSON,
        run_folder.CURVES_PNG,
        run_folder.CHECKPOINT,
        run_folder.SUMMARY,
    ):
        assert (run_dir_file := tiny_run_dir / name).is_file() and run_dir_file.stat().st_size > 0, name
    history = json.loads((tiny_run_dir / run_folder.HISTORY_JSON).read_text())
    assert [row["phase"] for row in history][:2] == ["head", "finetune"]
    assert {"val_auc", "val_accuracy", "train_loss", "baseline_accuracy"} <= set(history[0])
    state = torch.load(tiny_run_dir / run_folder.CHECKPOINT, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    with (tiny_run_dir / run_folder.SPLIT_FILE).open() as handle:
        rows = list(csv.DictReader(handle))
    by_split: dict[str, set[str]] = {"train": set(), "validation": set()}
    for row in rows:
        by_split[row["split"]].add(row["patient"])
        assert Path(row["path"]).is_absolute() and Path(row["path"]).is_file()  # usable from any cwd
    assert by_split["train"].isdisjoint(by_split["validation"])
    summary = run_folder.read_summary(tiny_run_dir)
    assert summary.validation_metrics["auc"] is not None and summary.validation_metrics["auc"] >= 0.9
    assert summary.majority_baseline["accuracy"] == pytest.approx(0.5)


def _flat_dataset(root: Path) -> Path:
    """Every film is a different constant grey: distinct files, identical model inputs, so any model
    predicts one class for all of them - the failure our source studies reported as results."""
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        (root / name).mkdir(parents=True)
        for i in range(12):
            level = (label * 12 + i + 1) / 30
            (root / name / f"person{label * 100 + i}_f.png").write_bytes(png_bytes(np.full((32, 32), level)))
    return root


def test_a_run_whose_predictions_collapse_fails_loudly(tmp_path: Path) -> None:
    config = TrainConfig(
        data_dir=_flat_dataset(tmp_path / "data"),
        backbone="baseline_cnn",
        weights="none",
        image_size=32,
        patient_pattern=r"(?P<patient>person\d+)",
        batch_size=8,
        head_epochs=1,
        finetune_epochs=1,
        output_dir=tmp_path / "runs",
        run_name="flat",
    )
    with pytest.raises(CollapsedModelError, match="COLLAPSED MODEL"):
        train(config)
    # The evidence is still written, so the failure can be inspected.
    assert (tmp_path / "runs" / "flat" / run_folder.SUMMARY).is_file()


def test_cli_exits_non_zero_and_exports_nothing_for_a_collapsed_model(tmp_path: Path) -> None:
    data = _flat_dataset(tmp_path / "data")
    code = main(
        [
            "run",
            "--data",
            str(data),
            "--backbone",
            "baseline_cnn",
            "--weights",
            "none",
            "--image-size",
            "32",
            "--patient-pattern",
            r"(?P<patient>person\d+)",
            "--head-epochs",
            "1",
            "--finetune-epochs",
            "0",
            "--output-dir",
            str(tmp_path / "runs"),
            "--store",
            str(tmp_path / "store"),
        ]
    )
    assert code == EXIT_COLLAPSED
    assert not (tmp_path / "store").exists()


def test_config_round_trips_through_the_run_folder(tiny_run_dir: Path) -> None:
    config = TrainConfig.from_sources(tiny_run_dir / run_folder.CONFIG_FILE, {})
    assert config.backbone == "baseline_cnn"
    assert config.augment.enabled
    with pytest.raises(ValueError, match="head_epochs"):
        TrainConfig(data_dir=Path("x"), head_epochs=0, finetune_epochs=0)
