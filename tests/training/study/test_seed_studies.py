"""The committed seed studies' grid specs: the splits their source studies used (68/16/16 by
near-duplicate group for COVID-19 radiography, 60/20/20 by image for leukemia), every cell a valid
run config, every run-list entry naming real cells; and the leukemia split on the real data."""

from collections import Counter
from pathlib import Path

import pytest

from tests.factories import SHARED_DATA
from training.data.sources import prepare_split
from training.study.grid import cells, selected
from training.study.spec import load_spec

STUDIES = Path(__file__).resolve().parents[3] / "reports" / "studies"


def test_covid_study_is_68_16_16_by_near_duplicate_group_over_its_imbalance_and_augmentation_axes() -> None:
    spec = load_spec(STUDIES / "covid19-radiography" / "grid.yaml")
    planned = cells(spec)
    config = planned[0][2]
    assert (config.split_method, config.val_fraction, config.test_fraction) == ("near_duplicate", 0.16, 0.16)
    assert spec.axes["imbalance"] == ["none", "class_weights", "undersample", "oversample"]
    assert spec.axes["augment.enabled"] == [False, True]
    assert len(planned) == len(spec.axes["model"]) * 8
    assert {c.seed for _, _, c in planned} == {config.seed}  # one split for every cell
    names = [name for name, _, _ in planned]
    for pattern in spec.run or []:
        assert any(selected(spec.model_copy(update={"run": [pattern]}), n) for n in names), pattern


def test_leukemia_study_is_60_20_20_by_image_ranked_by_macro_f1() -> None:
    spec = load_spec(STUDIES / "leukemia-all" / "grid.yaml")
    planned = cells(spec)
    config = planned[0][2]
    assert (config.split_method, config.val_fraction, config.test_fraction) == ("image", 0.2, 0.2)
    assert spec.rank_by == "macro_f1"
    assert {c.backbone for _, _, c in planned} == {"baseline_cnn", "vgg16", "resnet50", "efficientnet_lite0"}


def test_leukemia_split_on_the_real_data_is_stratified_60_20_20_without_shared_files() -> None:
    if not (SHARED_DATA / "leukemia-all224").is_dir():
        pytest.skip(f"leukemia data not found under {SHARED_DATA} (see ../shared/data/README.md)")
    config = cells(load_spec(STUDIES / "leukemia-all" / "grid.yaml"))[0][2]
    prepared = prepare_split(config)
    parts = prepared.split.parts()
    total = Counter(s.label for part in parts.values() for s in part)
    for name, fraction in (("validation", 0.2), ("test", 0.2)):
        counts = Counter(s.label for s in parts[name])
        assert all(abs(counts[label] - fraction * total[label]) <= 1 for label in total), name
    hashes = [{s.content_sha256 for s in part} for part in parts.values()]
    assert not (hashes[0] & hashes[1] or hashes[0] & hashes[2] or hashes[1] & hashes[2])
