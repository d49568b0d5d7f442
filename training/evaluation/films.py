"""The labelled films two store versions are compared on: a ``<root>/<CLASS>/*`` folder, or the
validation split recorded by the run a version was exported from.

Films are read once and preprocessed through ``training.data.inputs`` (which calls the one
decoding and preprocessing implementation, ``service.contract``) for each pixel contract asked for,
so two models with different input sizes still see the same films, each as the service would
prepare them.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from service.contract import InputError, ModelCard
from training.config import TrainConfig
from training.data.inputs import load_sample
from training.data.npz import NpzRows
from training.data.scan import DatasetLayoutError, Sample, scan_folder
from training.fit import run_folder
from training.stats.metrics import IntArray

FloatArray = npt.NDArray[np.float32]
# Evaluation needs no patient key: every file name matches.
_ANY_NAME = r"(?P<patient>.+)"
_VALIDATION = "validation"


class EvaluationFilmsError(ValueError):
    """The films cannot be used for a comparison; the message says why (never a file name)."""


@dataclass
class EvaluationFilms:
    """Films with labels indexed into ``class_names``; ``source`` says where they came from."""

    source: str
    paths: list[Path]
    labels: IntArray
    class_names: list[str]
    items: list[str | None] | None = None  # rows of an .npz file in ``paths``; None = all files
    _inputs: dict[tuple[int, int], FloatArray] = field(default_factory=dict, repr=False)

    @property
    def per_class(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(count) for name, count in zip(self.class_names, counts, strict=True)}

    def inputs(self, height: int, width: int) -> FloatArray:
        """``[N, 1, height, width]`` model inputs, computed once per size."""
        key = (height, width)
        if key not in self._inputs:
            tensors, undecodable = [], 0
            items = self.items or [None] * len(self.paths)
            with NpzRows() as rows:  # an .npz file is read once for all its rows
                for path, item in zip(self.paths, items, strict=True):
                    try:
                        tensors.append(load_sample(Sample(path, 0, "", "", item), rows, height, width))
                    except (InputError, OSError, ValueError):
                        undecodable += 1
            if undecodable:
                # Counted, not named: film file names can identify patients.
                raise EvaluationFilmsError(
                    f"{undecodable} of {len(self.paths)} films from {self.source} cannot be read or "
                    "decoded; both models must be measured on every film, so none is skipped"
                )
            self._inputs[key] = np.stack(tensors).astype(np.float32)
        return self._inputs[key]


def films_from_folder(root: Path, class_names: list[str]) -> EvaluationFilms:
    """``root/<CLASS>/*.{png,jpg,jpeg,dcm}``; every class folder must be one of ``class_names``."""
    try:
        scanned = scan_folder(root, _ANY_NAME)
    except DatasetLayoutError as exc:
        raise EvaluationFilmsError(str(exc)) from None
    unknown = sorted(set(scanned.class_names) - set(class_names))
    if unknown:
        raise EvaluationFilmsError(
            f"{root}: class folders {unknown} are not classes of the model ({', '.join(class_names)})"
        )
    labels = [class_names.index(scanned.class_names[s.label]) for s in scanned.samples]
    return _checked(
        EvaluationFilms(
            f"folder {root.resolve()}",
            [s.path for s in scanned.samples],
            np.asarray(labels, dtype=np.int64),
            list(class_names),
        )
    )


def recorded_run(model_dir: Path, card: ModelCard) -> Path:
    """The run folder a store version was exported from, found through its copied training config,
    and checked to be that run (same classes, same data summary), not a later one of the same name."""
    config_path = model_dir / run_folder.EXPORTED_CONFIG_FILE
    if not config_path.is_file():
        raise EvaluationFilmsError(
            f"{model_dir} records no training run ({run_folder.EXPORTED_CONFIG_FILE} missing); "
            "pass --eval-data or --run"
        )
    config = TrainConfig.from_sources(config_path, {})
    if config.run_name is None:
        raise EvaluationFilmsError(
            f"{config_path} has no run_name, so its run folder cannot be found; pass --eval-data or --run"
        )
    run_dir = config.output_dir / config.run_name
    if not (run_dir / run_folder.SPLIT_FILE).is_file():
        raise EvaluationFilmsError(
            f"the run {model_dir.name} was exported from, {run_dir}, is not here (no "
            f"{run_folder.SPLIT_FILE}; output_dir is relative to where training ran); "
            "pass --eval-data or --run"
        )
    summary = run_folder.read_summary(run_dir)
    if summary.class_names != card.class_names or summary.training_data != card.training_data:
        raise EvaluationFilmsError(
            f"{run_dir} is not the run {card.name} {card.version} was exported from (its classes or "
            "data split differ from the model card); pass --eval-data or --run"
        )
    return run_dir


def films_from_run(run_dir: Path, class_names: list[str]) -> EvaluationFilms:
    """The validation split of ``run_dir`` (``split.csv`` holds absolute paths and the split)."""
    paths: list[Path] = []
    items: list[str | None] = []
    labels: list[int] = []
    for row in run_folder.read_split(run_dir):
        if row.split != _VALIDATION:
            continue
        if row.label not in class_names:
            raise EvaluationFilmsError(
                f"{run_dir / run_folder.SPLIT_FILE} labels a film {row.label!r}, which is not a "
                f"class of the model ({', '.join(class_names)})"
            )
        paths.append(row.path)
        items.append(row.item)
        labels.append(class_names.index(row.label))
    return _checked(
        EvaluationFilms(
            f"validation split of run {run_dir.resolve()}",
            paths,
            np.asarray(labels, dtype=np.int64),
            list(class_names),
            items,
        )
    )


def _checked(films: EvaluationFilms) -> EvaluationFilms:
    # AUC, sensitivity and specificity are undefined without films of every class, and a model that
    # calls one class everywhere could not be told from a good one.
    missing = [name for name, count in films.per_class.items() if count == 0]
    if missing:
        raise EvaluationFilmsError(f"{films.source} holds no film of class(es) {missing}")
    return films
