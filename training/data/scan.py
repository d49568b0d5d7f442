"""A labelled image folder: ``<root>/<CLASS>/*.{png,jpg,jpeg,dcm}``, class names from folder names."""

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom"})
# Kermany names: personNNN_bacteria_MMM / personNNN_virus_MMM (pneumonia), IM-NNNN-MMMM and
# NORMAL2-IM-NNNN-MMMM (normal). IM-0115 and NORMAL2-IM-0115 are deliberately the same key: merging
# two patients can only make the split stricter, splitting one patient would leak.
KERMANY_PATIENT_PATTERN = r"^(?:NORMAL2-)?(?P<patient>IM-\d+|person\d+)"


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    patient: str
    content_sha256: str


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
            f"File name {filename!r} does not match the patient pattern {pattern.pattern!r}; "
            "set --patient-pattern to a regex with a (?P<patient>...) group."
        )
    return match.group("patient")


def scan_folder(root: Path, patient_pattern: str = KERMANY_PATIENT_PATTERN) -> ScannedFolder:
    if not root.is_dir():
        raise DatasetLayoutError(f"Dataset folder {root} does not exist.")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise DatasetLayoutError(
            f"{root} must contain one sub-folder per class (at least two), e.g. NORMAL/ and PNEUMONIA/."
        )
    pattern = re.compile(patient_pattern)
    samples = []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetLayoutError(f"Class folder {class_dir} holds no .png/.jpg/.jpeg/.dcm images.")
        for path in files:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            samples.append(Sample(path, label, patient_of(path.name, pattern), digest))
    return ScannedFolder(root, [d.name for d in class_dirs], samples)
