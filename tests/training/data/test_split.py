from collections import Counter
from pathlib import Path

import pytest

from training.data.scan import NO_PATIENT, DatasetLayoutError, Sample, scan_folder
from training.data.split import (
    LeakageError,
    Split,
    SplitError,
    check_every_class,
    check_no_leakage,
    given_split,
    split_by_image,
    split_by_patient,
)


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


def test_three_way_split_60_20_20_is_stratified_by_label_and_seeded() -> None:
    samples = _samples(50, 0) + _samples(100, 1) + _samples(25, 2)
    split = split_by_patient(samples, 0.2, seed=1, test_fraction=0.2)
    for part in (split.validation, split.test):
        assert Counter(s.label for s in part) == {0: 20, 1: 40, 2: 10}  # 20 % of each class's patients
    assert Counter(s.label for s in split.train) == {0: 60, 1: 120, 2: 30}
    patients = [{s.patient for s in part} for part in (split.train, split.validation, split.test)]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    assert split_by_patient(samples, 0.2, seed=1, test_fraction=0.2) == split
    assert split_by_patient(samples, 0.2, seed=2, test_fraction=0.2).test != split.test


def test_without_a_test_fraction_the_split_is_the_two_way_one() -> None:
    samples = _samples(30, 0) + _samples(60, 1)
    split = split_by_patient(samples, 0.25, seed=4)
    assert split.test == []
    assert split_by_patient(samples, 0.25, seed=4, test_fraction=0.0) == split


def test_small_strata_keep_a_training_group() -> None:
    samples = _samples(3, 0, per_patient=1) + _samples(2, 1, per_patient=1)
    split = split_by_patient(samples, 0.4, seed=0, test_fraction=0.4)
    assert Counter(s.label for s in split.train) == {0: 1, 1: 1}
    assert Counter(s.label for s in split.validation) == {0: 1, 1: 1}
    assert Counter(s.label for s in split.test) == {0: 1}


def test_image_split_keeps_identical_films_together() -> None:
    samples = [
        Sample(Path(f"{label}-{i}.png"), label, NO_PATIENT, f"{label}-{i // 3}-".ljust(64, "0"))
        for label in (0, 1)
        for i in range(60)
    ]  # every film has two byte-identical copies
    for seed in range(5):
        split = split_by_image(samples, 0.2, seed, test_fraction=0.2)
        where = {s.content_sha256: name for name, part in split.parts().items() for s in part}
        for name, part in split.parts().items():
            assert all(where[s.content_sha256] == name for s in part)
        assert Counter(s.label for s in split.validation) == {0: 12, 1: 12}  # 4 of 20 groups of 3


def test_patient_split_needs_a_patient_for_every_film() -> None:
    samples = [*_samples(5, 0), Sample(Path("anon.png"), 1, NO_PATIENT, "anon".ljust(64, "0"))]
    with pytest.raises(DatasetLayoutError, match=r"anon\.png has no patient id.*split_method \"image\""):
        split_by_patient(samples, 0.2, seed=0)


def test_leakage_is_checked_between_all_three_splits() -> None:
    train, val = _samples(3, 0), _samples(3, 1)
    copy = Sample(Path("copy.png"), 1, "p-new", val[0].content_sha256)
    with pytest.raises(LeakageError, match=r"1-0-0\.png \(validation\) == copy\.png \(test\)"):
        check_no_leakage(Split(train, val, [copy]))
    same_patient = Sample(Path("again.png"), 0, train[0].patient, "again".ljust(64, "0"))
    with pytest.raises(LeakageError, match=r"patient\(s\) appear in both train and test, e.g. p0-0"):
        check_no_leakage(Split(train, val, [same_patient]))
    anonymous = [Sample(Path(f"{i}.png"), 0, NO_PATIENT, f"{i}".ljust(64, "0")) for i in range(3)]
    check_no_leakage(Split(anonymous[:1], anonymous[1:2], anonymous[2:]))  # no patient is no shared patient


def test_given_split_that_leaks_is_refused_with_the_remedy() -> None:
    samples = _samples(4, 0, per_patient=1)
    copy = Sample(Path("copy.png"), 0, "p-x", samples[0].content_sha256)
    with pytest.raises(LeakageError, match=r"own split leaks.*0-0-0\.png \(train\) == copy\.png.*\"image\""):
        given_split([*samples, copy], ["train"] * len(samples) + ["validation"])
    split = given_split(samples, ["train", "validation", "test", "train"])
    assert [len(split.train), len(split.validation), len(split.test)] == [2, 1, 1]
    with pytest.raises(LeakageError, match=r"own split leaks: 1 patient\(s\) appear in both train and test"):
        given_split(_samples(1, 0), ["train", "test"])


def test_every_class_needs_train_and_validation_films() -> None:
    samples = _samples(4, 0) + _samples(4, 1) + _samples(1, 2)
    split = split_by_patient(samples, 0.25, seed=0)
    with pytest.raises(SplitError, match=r"\['c'\] have no film in validation"):
        check_every_class(split, ["a", "b", "c"])
    check_every_class(split, ["a", "b"])
    with pytest.raises(SplitError, match="must be in"):
        split_by_patient(samples, 0.6, seed=0, test_fraction=0.4)
