"""Several labelled sources in one run: each read with its own format, label map and grouping, then
grouped across sources (patients and near-duplicate films) and split per (source, class) stratum, so
every source has validation films and no film or near-copy crosses a split, whichever source holds it.
"""

from collections import Counter, defaultdict
from dataclasses import replace

import numpy as np

from training.config import SourceConfig, TrainConfig
from training.data.inputs import load_input
from training.data.manifest import read_manifest, scan_manifest
from training.data.near_duplicates import Groups, close_pairs, difference_hash
from training.data.scan import NO_PATIENT, DatasetLayoutError, Sample, scan_folder
from training.data.split import Split, check_no_leakage, check_no_near_duplicates, split_by_group

HASH_SIDE = 64  # the contract input the hash is taken from: small, cheap, enough for a 17 x 16 hash


def run_class_names(config: TrainConfig) -> list[str]:
    """The run's classes: ``class_names`` if given, else every mapped class name, sorted."""
    if config.class_names is not None:
        return list(config.class_names)
    names: set[str] = set()
    for source in config.sources or []:
        for folder in _class_folders(source):
            names.add(source.label_map.get(folder, folder))
    return sorted(names)


def _class_folders(source: SourceConfig) -> list[str]:
    if _format(source) == "csv":
        return sorted({row.label for row in read_manifest(source.data_dir).rows})
    root = source.data_dir
    if not root.is_dir():
        raise DatasetLayoutError(f"source {source.name}: {root} does not exist.")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _format(source: SourceConfig) -> str:
    if source.data_format != "auto":
        return source.data_format
    return "csv" if source.data_dir.suffix.lower() == ".csv" else "folder"


def _subsample(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """A seeded subsample of ``limit`` films keeping the class proportions."""
    if limit is None or limit >= len(samples):
        return samples
    rng = np.random.default_rng(seed)
    by_label: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_label[sample.label].append(sample)
    kept: list[Sample] = []
    for label in sorted(by_label):
        members = by_label[label]
        count = max(1, round(limit * len(members) / len(samples)))
        kept += [
            members[i] for i in sorted(rng.choice(len(members), size=min(count, len(members)), replace=False))
        ]
    return kept


def read_source(source: SourceConfig, class_names: list[str], seed: int) -> list[Sample]:
    """The source's films with run labels, its name, qualified patient ids and a difference hash."""
    pattern = source.patient_pattern if source.grouping == "patient" else None
    if _format(source) == "csv":
        manifest = read_manifest(source.data_dir)
        scanned = scan_manifest(manifest, None, pattern, patients=source.grouping == "patient")
        own_names, samples = scanned.class_names, scanned.samples
    else:
        folder = scan_folder(source.data_dir, pattern)
        own_names, samples = folder.class_names, folder.samples
    mapped = [source.label_map.get(name, name) for name in own_names]
    unknown = sorted(set(mapped) - set(class_names))
    if unknown:
        raise DatasetLayoutError(
            f"source {source.name}: classes {unknown} (after label_map {source.label_map}) are not among the "
            f"run's classes {class_names}; map them with label_map."
        )
    samples = _subsample(samples, source.max_films, seed)
    out = []
    for sample in samples:
        # Patient ids are only unique within a source: qualify them so two sources never merge by accident.
        patient = f"{source.name}:{sample.patient}" if sample.patient != NO_PATIENT else NO_PATIENT
        dhash = difference_hash(load_input(sample.path, HASH_SIDE, HASH_SIDE))
        label = class_names.index(mapped[sample.label])
        out.append(replace(sample, label=label, patient=patient, source=source.name, dhash=dhash))
    return out


def _groups(samples: list[Sample], max_distance: int) -> list[str]:
    """Per sample, its group: one patient, one content, and every near-duplicate, across sources."""
    groups = Groups(len(samples))
    first_of: dict[str, int] = {}
    for index, sample in enumerate(samples):
        for key in (sample.patient, f"sha256:{sample.content_sha256}"):
            if key == NO_PATIENT:
                continue
            if key in first_of:
                groups.union(first_of[key], index)
            else:
                first_of[key] = index
    for i, j in close_pairs([s.dhash or 0 for s in samples], max_distance):
        groups.union(i, j)
    return [f"group-{groups.find(i)}" for i in range(len(samples))]


def _stratum(members: list[Sample]) -> tuple[str, int]:
    """(source, majority label) of a group; a cross-source group goes with its first film's source."""
    labels = Counter(s.label for s in members)
    return members[0].source, min(labels, key=lambda lab: (-labels[lab], lab))


def split_sources(config: TrainConfig) -> tuple[list[str], Split, list[str]]:
    """(class names, the checked split, per-source descriptions) of a multi-source config."""
    assert config.sources is not None
    class_names = run_class_names(config)
    samples: list[Sample] = []
    described = []
    for source in config.sources:
        films = read_source(source, class_names, config.seed)
        samples += films
        grouping = (
            f"patient pattern {source.patient_pattern!r} + near-duplicates"
            if source.grouping == "patient"
            else "near-duplicate groups (no patient ids)"
        )
        label_map = f", labels {source.label_map}" if source.label_map else ""
        subsample = f", subsample of {source.max_films}" if source.max_films else ""
        described.append(
            f"{source.name}: {source.data_dir} ({len(films)} films, {grouping}{label_map}{subsample})"
        )
    group_of = dict(
        zip((id(s) for s in samples), _groups(samples, config.near_duplicate_distance), strict=True)
    )
    split = split_by_group(
        samples,
        lambda s: group_of[id(s)],
        config.val_fraction,
        config.test_fraction,
        config.seed,
        stratum_of=_stratum,
    )
    check_no_leakage(split)
    check_no_near_duplicates(split, config.near_duplicate_distance)
    return class_names, split, described
