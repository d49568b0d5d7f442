from collections import Counter
from pathlib import Path

import pytest

from training.data.scan import Sample, scan_folder
from training.data.split import LeakageError, Split, check_no_leakage, split_by_patient


def _samples(patients: int, label: int, per_patient: int = 2) -> list[Sample]:
    return [
        Sample(Path(f"{label}-{p}-{i}.png"), label, f"p{label}-{p}", f"{label}-{p}-{i}".ljust(64, "0"))
        for p in range(patients)
        for i in range(per_patient)
    ]


def test_split_keeps_patients_whole_and_is_stratified_and_seeded() -> None:
    samples = _samples(50, 0) + _samples(150, 1)
    split = split_by_patient(samples, 0.2, seed=7)
    train_patients = {s.patient for s in split.train}
    assert train_patients.isdisjoint({s.patient for s in split.validation})
    val_counts = Counter(s.label for s in split.validation)
    assert val_counts == {0: 20, 1: 60}  # 20 % of the patients of each class, 2 films each
    again = split_by_patient(samples, 0.2, seed=7)
    assert [s.path for s in again.validation] == [s.path for s in split.validation]
    other = split_by_patient(samples, 0.2, seed=8)
    assert [s.path for s in other.validation] != [s.path for s in split.validation]


def test_identical_content_across_splits_is_refused() -> None:
    train = _samples(3, 0)
    copy = Sample(Path("renamed-copy.png"), 0, "someone-else", train[0].content_sha256)
    with pytest.raises(LeakageError, match=r"renamed-copy.png \(validation\)"):
        check_no_leakage(Split(train=train, validation=[copy]))


def test_split_refuses_when_the_patient_pattern_lets_a_copy_cross(tmp_path: Path) -> None:
    # Two "patients" sharing one file, the situation a too-fine patient pattern creates.
    samples = _samples(10, 0) + _samples(10, 1)
    duplicated = [*samples, Sample(Path("dup.png"), 0, "p-other", samples[0].content_sha256)]
    with pytest.raises(LeakageError):
        for seed in range(20):  # some seed puts the copy on the other side of its twin
            split_by_patient(duplicated, 0.3, seed)


def test_real_kermany_split_has_no_patient_or_content_overlap(kermany_train: Path) -> None:
    samples = scan_folder(kermany_train).samples
    split = split_by_patient(samples, 0.2, seed=0)
    assert len(split.train) + len(split.validation) == 5216
    assert {s.patient for s in split.train}.isdisjoint({s.patient for s in split.validation})
    assert {s.content_sha256 for s in split.train}.isdisjoint({s.content_sha256 for s in split.validation})
    # The README says some byte-identical copies exist within a patient: they must stay together.
    assert len({s.content_sha256 for s in samples}) < len(samples)
    share = Counter(s.label for s in split.validation)[1] / len(split.validation)
    assert abs(share - 3875 / 5216) < 0.02
