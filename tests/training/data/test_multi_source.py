"""Several sources in one run: label maps, grouping by patient and by near-duplicate content across
sources, splits that hold per source, the source column of split.csv, and the worst-source threshold."""

import io
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import yaml
from PIL import Image
from pydantic import ValidationError

from tests.factories import png_bytes
from training.config import SourceConfig, TrainConfig
from training.data.near_duplicates import close_pairs, difference_hash, hamming
from training.data.scan import DatasetLayoutError
from training.data.sources import prepare_split
from training.data.split import LeakageError, Split, check_no_near_duplicates
from training.fit import run_folder
from training.stats.calibration import operating_threshold, worst_source_threshold
from training.stats.metrics import per_source_metrics

PATIENT = r"(?P<patient>p\d+)"
LABEL_MAP = {"COVID": "PNEUMONIA", "Normal": "NORMAL"}


def _plane(seed: int, size: int = 48) -> npt.NDArray[np.float64]:
    """A film with its own coarse structure, so distinct seeds are far apart in difference hash."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.random((6, 6)).astype(np.float32)).resize(
        (size, size), Image.Resampling.BICUBIC
    )
    return np.clip(np.asarray(coarse, dtype=np.float64), 0.0, 1.0)


def _jpeg(plane: npt.NDArray[np.float64], size: int) -> bytes:
    image = Image.fromarray((plane * 255).round().astype(np.uint8)).resize((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()


def _pediatric(root: Path, patients: int = 8, seed: int = 0) -> Path:
    """<root>/{NORMAL,PNEUMONIA}/pNN_k.png: two films per patient."""
    for label in ("NORMAL", "PNEUMONIA"):
        (root / label).mkdir(parents=True)
        for p in range(patients):
            for k in range(2):
                s = seed + 1000 * (label == "PNEUMONIA") + 10 * p + k
                (root / label / f"p{p:02d}{label[0]}_{k}.png").write_bytes(png_bytes(_plane(s)))
    return root


def _adult(root: Path, per_class: int = 10, seed: int = 5000) -> Path:
    """<root>/{COVID,Normal}/*.jpeg without patient ids."""
    for index, label in enumerate(("COVID", "Normal")):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            (root / label / f"{label}-{i}.jpeg").write_bytes(_jpeg(_plane(seed + 100 * index + i), 40))
    return root


def _sources(tmp_path: Path, **adult: Any) -> list[SourceConfig]:
    return [
        SourceConfig(name="peds", data_dir=tmp_path / "peds", grouping="patient", patient_pattern=PATIENT),
        SourceConfig(
            name="adult", data_dir=tmp_path / "adult", grouping="near_duplicate", label_map=LABEL_MAP, **adult
        ),
    ]


def _config(tmp_path: Path, **values: Any) -> TrainConfig:
    return TrainConfig(sources=_sources(tmp_path), val_fraction=0.3, **values)


def test_config_takes_data_dir_or_sources_not_both(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="either data_dir"):
        TrainConfig(data_dir=tmp_path, sources=_sources(tmp_path))
    with pytest.raises(ValidationError, match="either data_dir"):
        TrainConfig()
    with pytest.raises(ValidationError, match="unique"):
        TrainConfig(sources=[_sources(tmp_path)[0], _sources(tmp_path)[0]])
    with pytest.raises(ValidationError, match="patient_pattern"):
        SourceConfig(name="x", data_dir=tmp_path, grouping="patient")
    assert TrainConfig(data_dir=tmp_path).sources is None  # the single-source form stays valid


def test_yaml_source_roots_are_relative_to_the_yaml(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "run.yaml"
    path.write_text(
        yaml.safe_dump({"sources": [{"name": "a", "data_dir": "../data", "grouping": "near_duplicate"}]})
    )
    config = TrainConfig.from_sources(path, {})
    assert config.sources is not None
    assert config.sources[0].data_dir == (tmp_path / "data").resolve()
    # --data on the command line replaces the file's sources
    assert TrainConfig.from_sources(path, {"data_dir": tmp_path}).sources is None


def test_label_maps_merge_two_sources_into_the_run_classes(tmp_path: Path) -> None:
    _pediatric(tmp_path / "peds")
    _adult(tmp_path / "adult")
    prepared = prepare_split(_config(tmp_path))
    assert prepared.class_names == ["NORMAL", "PNEUMONIA"]
    films = [s for part in prepared.split.parts().values() for s in part]
    assert Counter(s.source for s in films) == {"peds": 32, "adult": 20}
    for sample in films:
        folder = sample.path.parent.name
        assert prepared.class_names[sample.label] == LABEL_MAP.get(folder, folder)
    # every source has validation films of both classes
    assert {(s.source, s.label) for s in prepared.split.validation} == {
        (source, label) for source in ("peds", "adult") for label in (0, 1)
    }
    # patient ids are qualified by source; adult films have none
    assert all(s.patient.startswith("peds:p") for s in films if s.source == "peds")
    assert all(s.patient == "" for s in films if s.source == "adult")


def test_an_unmapped_class_outside_the_run_classes_is_refused(tmp_path: Path) -> None:
    _pediatric(tmp_path / "peds")
    _adult(tmp_path / "adult")
    sources = _sources(tmp_path)
    sources[1] = sources[1].model_copy(update={"label_map": {"Normal": "NORMAL"}})
    with pytest.raises(DatasetLayoutError, match="COVID"):
        prepare_split(TrainConfig(sources=sources, class_names=["NORMAL", "PNEUMONIA"], val_fraction=0.3))


def test_split_csv_keeps_the_source_and_hash(tmp_path: Path) -> None:
    _pediatric(tmp_path / "peds")
    _adult(tmp_path / "adult")
    prepared = prepare_split(_config(tmp_path))
    run_folder.write_split(tmp_path, prepared.split, prepared.class_names)
    rows = run_folder.read_split(tmp_path)
    written = [s for part in prepared.split.parts().values() for s in part]
    assert [(r.source, r.dhash) for r in rows] == [(s.source, s.dhash) for s in written]
    assert [r.sample(prepared.class_names) for r in rows] == written


def test_adding_a_source_leaves_the_other_sources_split_unchanged(tmp_path: Path) -> None:
    _pediatric(tmp_path / "peds")
    _adult(tmp_path / "adult")
    alone = prepare_split(TrainConfig(sources=_sources(tmp_path)[:1], val_fraction=0.3)).split
    both = prepare_split(_config(tmp_path)).split
    assert {s.path for s in alone.validation} == {s.path for s in both.validation if s.source == "peds"}


def test_near_duplicates_across_sources_stay_in_one_split(tmp_path: Path) -> None:
    _pediatric(tmp_path / "peds")
    _adult(tmp_path / "adult")
    # Copies of pediatric films in the adult source, re-encoded as JPEG at another size.
    copies = []
    for path in sorted((tmp_path / "peds" / "PNEUMONIA").glob("*.png"))[::3]:
        with Image.open(path) as image:
            plane = np.asarray(image, dtype=np.float64) / 255
        copy = tmp_path / "adult" / "COVID" / f"copy-{path.stem}.jpeg"
        copy.write_bytes(_jpeg(plane, 64))
        copies.append((path, copy))
    split = prepare_split(_config(tmp_path, seed=3)).split
    where = {s.path: name for name, part in split.parts().items() for s in part}
    for original, copy in copies:
        assert where[original] == where[copy], f"{copy.name} split from {original.name}"


def test_near_identical_films_across_splits_are_refused(tmp_path: Path) -> None:
    _pediatric(tmp_path / "peds")
    _adult(tmp_path / "adult")
    split = prepare_split(_config(tmp_path)).split
    check_no_near_duplicates(split, 12)  # as made: no near-copy across splits
    original = next(s for s in split.train if s.source == "peds")
    # The same film in the other source, re-encoded: other bytes, a hash 3 bits away.
    near_copy = replace(
        original, source="adult", content_sha256="0" * 64, dhash=(original.dhash or 0) ^ 0b10101
    )
    with pytest.raises(LeakageError, match="near-identical"):
        check_no_near_duplicates(Split(split.train, [*split.validation, near_copy]), 12)


def test_difference_hash_finds_copies_not_strangers() -> None:
    plane = _plane(1, 96).astype(np.float32)
    copy = np.asarray(Image.fromarray(plane).resize((50, 50)).resize((96, 96)), dtype=np.float32)
    other = _plane(2, 96).astype(np.float32)
    assert hamming(difference_hash(plane), difference_hash(copy)) <= 12
    assert hamming(difference_hash(plane), difference_hash(other)) > 40
    hashes = [difference_hash(p) for p in (plane, other, copy)]
    assert close_pairs(hashes, 12) == [(0, 2)]
    assert close_pairs(hashes[:1], 12, hashes[1:]) == [(0, 1)]


def test_worst_source_decides_the_operating_point() -> None:
    # Source "a" ranks its positives high, source "b" lower: b needs the lower threshold.
    labels = np.array([1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0])
    scores = np.array([0.9, 0.85, 0.8, 0.95, 0.1, 0.2, 0.5, 0.45, 0.6, 0.4, 0.05, 0.3])
    sources = ["a"] * 6 + ["b"] * 6
    probabilities = np.stack([1 - scores, scores], axis=1)
    value = worst_source_threshold(labels, scores, 1, 1.0, sources)
    assert value == pytest.approx(0.4)
    per_source = per_source_metrics(labels, probabilities, sources, 1, value)
    assert all(m.sensitivity == 1.0 for m in per_source.values())
    # pooled, the 0.95 target is met at a higher threshold that leaves source b short
    pooled, _ = operating_threshold(labels, scores, 1, 0.85)
    assert pooled > value
    assert (per_source_metrics(labels, probabilities, sources, 1, pooled)["b"].sensitivity or 0) < 0.85
    chosen, method = operating_threshold(labels, scores, 1, 1.0, sources)
    assert chosen == value
    assert "every source" in method
