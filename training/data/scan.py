"""A labelled image folder: ``<root>/<CLASS>/*.{png,jpg,jpeg,dcm}``, class names from folder names.

A class folder that holds an ``images/`` sub-folder (the COVID-19 Radiography Database layout,
``<CLASS>/images/*.png`` beside ``<CLASS>/masks/``) is read from there; its other sub-folders,
masks included, are ignored.
"""

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from training.config import KERMANY_PATIENT_PATTERN

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom"})
IMAGES_SUBFOLDER = "images"
# The patient of a film whose source carries no patient id (an .npz row, a split by image).
NO_PATIENT = ""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    patient: str  # NO_PATIENT where the source has none
    content_sha256: str
    # A film inside a container file, e.g. "train:12" = row 12 of ``train_images`` in an .npz;
    # None for a film that is the whole file at ``path``.
    item: str | None = None
    source: str = ""  # the run's source name ("" = a single-source run)
    dhash: int | None = None  # 64-bit difference hash (near-duplicate grouping); None = not computed

    @property
    def name(self) -> str:
        """How messages name the film: ``file.png`` or ``file.npz[train:12]``."""
        return self.path.name if self.item is None else f"{self.path.name}[{self.item}]"


@dataclass(frozen=True)
class ScannedFolder:
    root: Path
    class_names: list[str]
    samples: list[Sample]


class DatasetLayoutError(ValueError):
    pass


def patient_of(filename: str, pattern: re.Pattern[str]) -> str:
    match = pattern.search(filename)
    if match is None:
        raise DatasetLayoutError(
            f"File name {filename!r} does not match the patient pattern {pattern.pattern!r}. Set "
            "patient_pattern (--patient-pattern) to a regex with a (?P<patient>...) group that finds the "
            'patient in every file name, or, if the file names carry no patient id, set split_method "image" '
            "(each image its own group; identical files are still kept together)."
        )
    return match.group("patient")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_folder(class_dir: Path) -> Path:
    """Where a class's films are: ``<CLASS>/images/`` if there is one, else ``<CLASS>/`` itself."""
    images = class_dir / IMAGES_SUBFOLDER
    return images if images.is_dir() else class_dir


def scan_folder(
    root: Path,
    patient_pattern: str | None = KERMANY_PATIENT_PATTERN,
    class_names: Sequence[str] | None = None,
) -> ScannedFolder:
    """Every image under ``root/<CLASS>/`` (or ``root/<CLASS>/images/``), labelled in class order.

    ``patient_pattern`` None reads no patient ids (every film gets ``NO_PATIENT``). ``class_names``
    fixes the label order; it must name exactly the class folders. Default: sorted folder names.
    """
    if not root.is_dir():
        raise DatasetLayoutError(f"Dataset folder {root} does not exist.")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise DatasetLayoutError(
            f"{root} must contain one sub-folder per class (at least two), e.g. NORMAL/ and PNEUMONIA/."
        )
    if class_names is not None:
        found = {d.name for d in class_dirs}
        if set(class_names) != found or len(set(class_names)) != len(class_names):
            raise DatasetLayoutError(
                f"class_names {list(class_names)} must name each class folder of {root} once: {sorted(found)}"
            )
        by_name = {d.name: d for d in class_dirs}
        class_dirs = [by_name[name] for name in class_names]
    pattern = re.compile(patient_pattern) if patient_pattern is not None else None
    samples = []
    for label, class_dir in enumerate(class_dirs):
        folder = image_folder(class_dir)
        files = sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        if not files:
            raise DatasetLayoutError(f"Class folder {folder} holds no .png/.jpg/.jpeg/.dcm images.")
        for path in files:
            patient = patient_of(path.name, pattern) if pattern is not None else NO_PATIENT
            samples.append(Sample(path, label, patient, sha256_bytes(path.read_bytes())))
    return ScannedFolder(root, [d.name for d in class_dirs], samples)
