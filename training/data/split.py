"""Patient-level, stratified, seeded train/validation split, with a content-leakage check."""

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training.data.scan import Sample


class LeakageError(RuntimeError):
    pass


@dataclass(frozen=True)
class Split:
    train: list[Sample]
    validation: list[Sample]


def split_by_patient(samples: Sequence[Sample], val_fraction: float, seed: int) -> Split:
    """Every image of a patient lands in one split; patients are drawn per label stratum.

    A patient's stratum is the label they have most images of, so classes keep their proportions
    in both splits even when a patient has films of several classes.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    by_patient: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_patient[sample.patient].append(sample)
    strata: dict[int, list[str]] = defaultdict(list)
    for patient in sorted(by_patient):
        labels = Counter(s.label for s in by_patient[patient])
        strata[min(labels, key=lambda lab: (-labels[lab], lab))].append(patient)
    rng = np.random.default_rng(seed)
    validation_patients: set[str] = set()
    for label in sorted(strata):
        patients = strata[label]
        order = rng.permutation(len(patients))
        count = max(1, round(len(patients) * val_fraction)) if len(patients) > 1 else 0
        validation_patients.update(patients[i] for i in order[:count])
    split = Split(
        train=[s for s in samples if s.patient not in validation_patients],
        validation=[s for s in samples if s.patient in validation_patients],
    )
    check_no_leakage(split)
    return split


def check_no_leakage(split: Split) -> None:
    """Refuse a split where a patient or an identical file (same bytes) sits on both sides."""
    shared_patients = {s.patient for s in split.train} & {s.patient for s in split.validation}
    if shared_patients:
        raise LeakageError(f"{len(shared_patients)} patient(s) appear in both train and validation.")
    train_hashes = {s.content_sha256: s for s in split.train}
    duplicates = [
        (train_hashes[s.content_sha256], s) for s in split.validation if s.content_sha256 in train_hashes
    ]
    if duplicates:
        first_train, first_val = duplicates[0]
        raise LeakageError(
            f"{len(duplicates)} identical image(s) appear in both train and validation, e.g. "
            f"{first_train.path.name} (train) == {first_val.path.name} (validation). Fix the patient "
            "pattern or remove the copies: a duplicate across splits inflates validation metrics."
        )
