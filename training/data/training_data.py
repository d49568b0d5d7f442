"""A run's films, split and preprocessed once: what training reads, and what a study grid shares
between cells with the same data settings."""

import logging
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from service.contract import SplitSummary, TrainingDataSummary
from training.config import TrainConfig
from training.data.dataset import FilmDataset
from training.data.scan import NO_PATIENT, Sample
from training.data.sources import prepare_split
from training.data.split import Split
from training.stats.metrics import MetricValues, majority_baseline

log = logging.getLogger(__name__)

# The fields that decide which films land in which split and how they are preprocessed: two configs
# equal on these share one ``TrainingData`` (the grid reuses it across cells).
DATA_FIELDS = (
    "data_dir",
    "sources",
    "near_duplicate_distance",
    "data_format",
    "class_names",
    "patient_pattern",
    "split_method",
    "val_fraction",
    "test_fraction",
    "seed",
    "image_size",
    "positive_class",
)


@dataclass(frozen=True)
class TrainingData:
    """Every film of every split, preprocessed once through the contract."""

    class_names: list[str]
    positive: int | None
    summary: TrainingDataSummary
    train_set: FilmDataset
    val_set: FilmDataset
    test_set: FilmDataset | None
    baseline: MetricValues
    split: Split  # written into every run folder


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
        patients=len({s.patient for s in samples} - {NO_PATIENT}),  # 0: the source names none
        per_class={name: counts.get(i, 0) for i, name in enumerate(class_names)},
    )


def load_data(config: TrainConfig, recorded: tuple[list[str], Split, str] | None = None) -> TrainingData:
    """Read the source, split it (refusing leakage), preprocess every film once.

    ``recorded``: (class names, split, its description) as a run folder recorded them; the films are
    then not read and split again, and the training films are not preprocessed (``finish`` needs
    only validation and test films).
    """
    if recorded is None:
        prepared = prepare_split(config)
        class_names, split, source, method = (
            prepared.class_names,
            prepared.split,
            prepared.source,
            prepared.method,
        )
    else:
        class_names, split, source = recorded
        method = "as recorded in the run's split.csv"
    positive = positive_index(class_names, config.positive_class)
    parts = {"train": split.train, "validation": split.validation, "test": split.test}
    summary = TrainingDataSummary(
        source=source,
        split_method=method,
        seed=config.seed,
        splits={name: summarise_split(samples, class_names) for name, samples in parts.items() if samples},
    )
    log.info("split %s", {k: v.per_class for k, v in summary.splits.items()})
    started = time.perf_counter()
    size = config.image_size
    train_set = FilmDataset(split.train if recorded is None else [], size, size)
    val_set = FilmDataset(split.validation, size, size)
    test_set = FilmDataset(split.test, size, size) if split.test else None
    films = len(train_set) + len(val_set) + (len(test_set) if test_set else 0)
    log.info("preprocessed %d films in %.1f s", films, time.perf_counter() - started)
    train_labels = np.array([s.label for s in split.train], dtype=np.int64)
    baseline = majority_baseline(train_labels, val_set.labels.numpy(), len(class_names), positive)
    return TrainingData(class_names, positive, summary, train_set, val_set, test_set, baseline, split)
