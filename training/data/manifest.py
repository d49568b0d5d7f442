"""A CSV manifest: one film per row, ``path`` and ``label`` columns, optional ``patient`` and ``split``.

``path`` is relative to the CSV's folder (or absolute), ``label`` a class name, ``patient`` a patient
id (blank = unknown), ``split`` one of train / validation (or val) / test.
"""

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from training.data.scan import (
    IMAGE_SUFFIXES,
    NO_PATIENT,
    DatasetLayoutError,
    Sample,
    patient_of,
    sha256_bytes,
)

REQUIRED_COLUMNS = ("path", "label")
SPLIT_NAMES = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}


@dataclass(frozen=True)
class ManifestRow:
    line: int  # in the file, header = 1
    path: Path
    label: str
    patient: str | None  # None = no patient column; NO_PATIENT = blank cell
    split: str | None  # None = no split column


@dataclass(frozen=True)
class Manifest:
    csv_path: Path
    rows: list[ManifestRow]
    has_patient: bool
    has_split: bool


@dataclass(frozen=True)
class ManifestSource:
    class_names: list[str]
    samples: list[Sample]
    given_splits: list[str] | None  # per sample, where the CSV has a split column


def read_manifest(csv_path: Path) -> Manifest:
    """The rows, checked (columns, split names, files present, no file twice); nothing decoded yet."""
    if not csv_path.is_file():
        raise DatasetLayoutError(f"Manifest {csv_path} does not exist.")
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise DatasetLayoutError(
                f"{csv_path} lacks the column(s) {missing}; a manifest has path and label columns, "
                f"optionally patient and split (found {columns})."
            )
        has_patient, has_split = "patient" in columns, "split" in columns
        rows = []
        seen: dict[Path, int] = {}
        for line, raw in enumerate(reader, start=2):
            cells = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            where = f"{csv_path.name} line {line}"
            if not cells["path"] or not cells["label"]:
                raise DatasetLayoutError(f"{where}: path and label must not be empty.")
            path = Path(cells["path"])
            path = path if path.is_absolute() else csv_path.parent / path
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                raise DatasetLayoutError(f"{where}: {path} is not a .png/.jpg/.jpeg/.dcm file that exists.")
            resolved = path.resolve()
            if resolved in seen:
                raise DatasetLayoutError(f"{where}: {path} is already listed on line {seen[resolved]}.")
            seen[resolved] = line
            split = None
            if has_split:
                split = SPLIT_NAMES.get(cells["split"].lower())
                if split is None:
                    raise DatasetLayoutError(
                        f"{where}: split {cells['split']!r} is not one of train, validation (val), test."
                    )
            patient = cells["patient"] if has_patient else None
            rows.append(ManifestRow(line, path, cells["label"], patient, split))
    if not rows:
        raise DatasetLayoutError(f"{csv_path} lists no films.")
    return Manifest(csv_path, rows, has_patient, has_split)


def scan_manifest(
    manifest: Manifest,
    class_names: Sequence[str] | None = None,
    patient_pattern: str | None = None,
    patients: bool = True,
) -> ManifestSource:
    """Samples of the manifest, labelled in ``class_names`` order (default: sorted label names).

    Patients come from the ``patient`` column; without one, from ``patient_pattern`` applied to the
    file names (None: no patient ids). ``patients=False`` reads none at all.
    """
    labels = sorted({row.label for row in manifest.rows})
    if class_names is None:
        names = labels
    else:
        names = list(class_names)
        unknown = [label for label in labels if label not in names]
        if unknown:
            raise DatasetLayoutError(f"{manifest.csv_path} labels {unknown} are not in class_names {names}.")
    pattern = re.compile(patient_pattern) if patient_pattern is not None and patients else None
    samples = []
    for row in manifest.rows:
        if not patients:
            patient = NO_PATIENT
        elif row.patient is not None:
            patient = row.patient
        elif pattern is not None:
            patient = patient_of(row.path.name, pattern)
        else:
            patient = NO_PATIENT
        digest = sha256_bytes(row.path.read_bytes())
        samples.append(Sample(row.path, names.index(row.label), patient, digest))
    given = [row.split for row in manifest.rows if row.split is not None] if manifest.has_split else None
    return ManifestSource(names, samples, given)
