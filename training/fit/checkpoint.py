"""A finished run read back: its best checkpoint as a model, and the films of its own split."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.backbones.factory import Classifier, create_model
from training.config import TrainConfig
from training.data.dataset import FilmDataset
from training.data.scan import Sample
from training.fit import run_folder


def load_trained_model(run_dir: Path) -> tuple[Classifier, TrainConfig, run_folder.RunSummary]:
    """Rebuild the architecture and load the best checkpoint as a plain state dict."""
    config = TrainConfig.from_sources(run_dir / run_folder.CONFIG_FILE, {})
    summary = run_folder.read_summary(run_dir)
    model = create_model(config.backbone, len(summary.class_names), weights="none").model
    state = torch.load(run_dir / run_folder.CHECKPOINT, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval(), config, summary


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


def load_split(
    run_dir: Path, class_names: list[str], image_size: int, train_limit: int | None = None
) -> SplitData:
    """The run's own split, re-read through the contract: the films the model was fitted and tuned on.

    ``train_limit``: a seeded draw of at most this many training films (the OOD fit needs a few
    thousand, and reading every film of a large run costs minutes on a small machine)."""
    rows = split_samples(run_dir, class_names)
    train = rows["train"]
    if train_limit is not None and len(train) > train_limit:
        keep = np.sort(np.random.default_rng(0).choice(len(train), train_limit, replace=False))
        train = [train[i] for i in keep]
    return SplitData(
        FilmDataset(train, image_size, image_size),
        FilmDataset(rows["validation"], image_size, image_size),
    )
