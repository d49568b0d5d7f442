"""Stratified, seeded train/validation/test splits by group (patient, or identical content), a
source's own split checked, and a leakage check over every pair of splits."""

import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from training.data.near_duplicates import Groups, close_pairs
from training.data.scan import NO_PATIENT, DatasetLayoutError, Sample

SPLIT_NAMES = ("train", "validation", "test")
_EXAMPLES = 5  # pairs a leakage message names
_RATIO_REMEDY = (
    "Fix the patient pattern or remove the copies: a film across splits inflates the metrics measured "
    "on the split it leaks into."
)
_GIVEN_REMEDY = (
    "Fix the source's split, or set drop_leaked_copies to keep it and drop the copies from the later "
    'split, or set split_method "image" (or "patient", where the source has patient ids) to re-split '
    "it with identical films kept together."
)


class LeakageError(RuntimeError):
    pass


class SplitError(ValueError):
    """A split that cannot be made or used: a class missing from train or validation, bad fractions."""


@dataclass(frozen=True)
class Split:
    train: list[Sample]
    validation: list[Sample]
    test: list[Sample] = field(default_factory=list)
    dropped_copies: int = 0  # given splits only: later-split films dropped as copies of earlier ones

    def parts(self) -> dict[str, list[Sample]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def _counts(groups: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Groups of one stratum for validation and test; at least one each where the stratum allows,
    and never all of it: training keeps at least one group."""
    if groups < 2:
        return 0, 0
    n_val = max(1, round(groups * val_fraction))
    n_test = max(1, round(groups * test_fraction)) if test_fraction > 0 else 0
    n_val = min(n_val, groups - 1)
    n_test = min(n_test, groups - 1 - n_val)
    return n_val, n_test


def split_by_group(
    samples: Sequence[Sample],
    group_of: Callable[[Sample], str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    *,
    stratum_of: Callable[[list[Sample]], Hashable] | None = None,
) -> Split:
    """Every sample of a group lands in one split; groups are drawn per label stratum.

    ``stratum_of`` (multi-source runs): the stratum of a group's members, e.g. (source, label); each
    stratum then draws from its own generator seeded by ``seed`` and the stratum, so adding a source
    leaves every other source's split unchanged.

    A group's stratum is the label it has most samples of (ties: the lower label), so classes keep
    their proportions in every split even when a group holds films of several classes. Per stratum
    the groups are permuted by ``seed``; the first ``val_fraction`` go to validation, the next
    ``test_fraction`` to test, the rest to train (with ``test_fraction`` 0 this is exactly the
    two-way split earlier runs used).
    """
    if not 0.0 < val_fraction < 1.0 or not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 1:
        raise SplitError(
            f"val_fraction {val_fraction} and test_fraction {test_fraction} must be in [0, 1), "
            "val_fraction above 0, and leave some training data"
        )
    members: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        members[group_of(sample)].append(sample)
    strata: dict[Hashable, list[str]] = defaultdict(list)
    for group in sorted(members):
        if stratum_of is not None:
            strata[stratum_of(members[group])].append(group)
            continue
        labels = Counter(s.label for s in members[group])
        strata[min(labels, key=lambda lab: (-labels[lab], lab))].append(group)
    rng = np.random.default_rng(seed)
    validation_groups: set[str] = set()
    test_groups: set[str] = set()
    for stratum in sorted(strata, key=repr) if stratum_of is not None else sorted(strata):  # type: ignore[type-var]
        groups = strata[stratum]
        if stratum_of is not None:
            rng = np.random.default_rng([seed, zlib.crc32(repr(stratum).encode())])
        order = rng.permutation(len(groups))
        n_val, n_test = _counts(len(groups), val_fraction, test_fraction)
        validation_groups.update(groups[i] for i in order[:n_val])
        test_groups.update(groups[i] for i in order[n_val : n_val + n_test])
    parts: dict[str, list[Sample]] = {name: [] for name in SPLIT_NAMES}
    for sample in samples:
        group = group_of(sample)
        name = "validation" if group in validation_groups else "test" if group in test_groups else "train"
        parts[name].append(sample)
    split = Split(parts["train"], parts["validation"], parts["test"])
    check_no_leakage(split)
    return split


def _patient(sample: Sample) -> str:
    if sample.patient == NO_PATIENT:
        raise DatasetLayoutError(
            f"{sample.name} has no patient id, so it cannot be split by patient; give every film a "
            'patient (a patient pattern or a patient column), or set split_method "image".'
        )
    return sample.patient


def split_by_patient(
    samples: Sequence[Sample], val_fraction: float, seed: int, test_fraction: float = 0.0
) -> Split:
    """Every image of a patient lands in one split, stratified by label (see ``split_by_group``).

    A file copied under two patient ids makes the split fail (``LeakageError``) rather than merge
    them: it means the patient pattern is wrong.
    """
    return split_by_group(samples, _patient, val_fraction, test_fraction, seed)


def split_by_image(
    samples: Sequence[Sample], val_fraction: float, seed: int, test_fraction: float = 0.0
) -> Split:
    """Each image its own group, except that byte-identical films form one group, so a copy never
    sits on both sides. For sources without patient ids: patients are not looked at."""
    return split_by_group(samples, lambda s: s.content_sha256, val_fraction, test_fraction, seed)


def near_duplicate_groups(samples: Sequence[Sample], hashes: Sequence[int], max_distance: int) -> list[str]:
    """Per sample, its group: identical bytes and every film within ``max_distance`` bits of
    difference hash (``hashes[i]`` is sample i's) are one group, transitively."""
    groups = Groups(len(samples))
    first_of: dict[str, int] = {}
    for index, sample in enumerate(samples):
        groups.union(first_of.setdefault(sample.content_sha256, index), index)
    for i, j in close_pairs(hashes, max_distance):
        groups.union(i, j)
    return [f"group-{groups.find(i)}" for i in range(len(samples))]


def split_by_near_duplicate(
    samples: Sequence[Sample],
    hashes: Sequence[int],
    val_fraction: float,
    seed: int,
    test_fraction: float = 0.0,
    *,
    max_distance: int = 12,
) -> Split:
    """For sources without patient ids: a film, its copies and its near-copies (resized, re-encoded,
    re-windowed: see ``near_duplicates``) land in one split, stratified by label."""
    groups = near_duplicate_groups(samples, hashes, max_distance)
    group_of = dict(zip((id(s) for s in samples), groups, strict=True))
    return split_by_group(samples, lambda s: group_of[id(s)], val_fraction, test_fraction, seed)


def given_split(samples: Sequence[Sample], splits: Sequence[str], drop_copies: bool = False) -> Split:
    """A source's own split (``splits[i]`` names sample i's split), refused if it leaks.

    ``drop_copies``: instead of refusing, drop every validation or test film byte-identical to a film
    of an earlier split (train, then validation), so the source's split can still be used as given;
    ``dropped_copies`` counts them for the record.
    """
    parts: dict[str, list[Sample]] = {name: [] for name in SPLIT_NAMES}
    for sample, name in zip(samples, splits, strict=True):
        parts[name].append(sample)
    dropped = 0
    if drop_copies:
        seen = {s.content_sha256 for s in parts["train"]}
        for name in SPLIT_NAMES[1:]:
            kept = [s for s in parts[name] if s.content_sha256 not in seen]
            dropped += len(parts[name]) - len(kept)
            parts[name] = kept
            seen |= {s.content_sha256 for s in kept}
    split = Split(parts["train"], parts["validation"], parts["test"], dropped_copies=dropped)
    check_no_leakage(split, _GIVEN_REMEDY, "The source's own split leaks: ")
    return split


def check_no_near_duplicates(split: Split, max_distance: int, remedy: str = _RATIO_REMEDY) -> None:
    """Refuse a split where two films within ``max_distance`` bits of difference hash (the same film
    resized or re-encoded, possibly from two sources) sit in two splits. Films without a hash are
    not compared."""
    from training.data.near_duplicates import close_pairs  # numpy only; kept local to avoid a cycle

    parts = {name: [s for s in samples if s.dhash is not None] for name, samples in split.parts().items()}
    for first, second in combinations(SPLIT_NAMES, 2):
        a, b = parts[first], parts[second]
        if not a or not b:
            continue
        pairs = close_pairs([s.dhash or 0 for s in a], max_distance, [s.dhash or 0 for s in b])
        if pairs:
            examples = ", ".join(
                f"{a[i].source or '-'}/{a[i].name} ({first}) ~ {b[j].source or '-'}/{b[j].name} ({second})"
                for i, j in pairs[:_EXAMPLES]
            )
            raise LeakageError(
                f"{len(pairs)} near-identical film pair(s) (difference hash within {max_distance} bits) "
                f"appear in both {first} and {second}, e.g. {examples}. {remedy}"
            )


def check_no_leakage(split: Split, remedy: str = _RATIO_REMEDY, prefix: str = "") -> None:
    """Refuse a split where a patient or an identical file (same bytes) sits in two splits.

    Films without a patient id (``NO_PATIENT``) are checked by content only. ``remedy`` ends the
    message; ``prefix`` starts it.
    """
    parts = split.parts()
    for first, second in combinations(SPLIT_NAMES, 2):
        patients = {s.patient for s in parts[first]} & {s.patient for s in parts[second]}
        patients.discard(NO_PATIENT)
        if patients:
            examples = ", ".join(sorted(patients)[:_EXAMPLES])
            raise LeakageError(
                f"{prefix}{len(patients)} patient(s) appear in both {first} and {second}, e.g. {examples}. "
                + remedy
            )
    for first, second in combinations(SPLIT_NAMES, 2):
        by_hash = {s.content_sha256: s for s in parts[first]}
        duplicates = [(by_hash[s.content_sha256], s) for s in parts[second] if s.content_sha256 in by_hash]
        if duplicates:
            examples = ", ".join(
                f"{a.name} ({first}) == {b.name} ({second})" for a, b in duplicates[:_EXAMPLES]
            )
            raise LeakageError(
                f"{prefix}{len(duplicates)} identical image(s) appear in both {first} and {second}, e.g. "
                f"{examples}. {remedy}"
            )


def check_every_class(split: Split, class_names: Sequence[str]) -> None:
    """Every class needs at least one film in train and one in validation."""
    for part in ("train", "validation"):
        counts = Counter(s.label for s in split.parts()[part])
        missing = [name for label, name in enumerate(class_names) if counts[label] == 0]
        if missing:
            raise SplitError(
                f"class(es) {missing} have no film in {part} (per class: "
                f"{ {name: counts[label] for label, name in enumerate(class_names)} }). Every class needs "
                "films in train and validation, so at least two patients (two distinct images when split "
                "by image, or films in both of a given split): add films or drop the class."
            )
