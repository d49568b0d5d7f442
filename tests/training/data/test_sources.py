"""Dataset sources (folder trees, MedMNIST .npz, CSV manifests) and ``prepare_split`` on each."""

import csv
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from service.contract import decode_array, to_model_input
from tests.factories import SHARED_DATA, chest_like, png_bytes
from training.config import TrainConfig
from training.data.dataset import FilmDataset
from training.data.npz import scan_npz
from training.data.scan import NO_PATIENT, DatasetLayoutError
from training.data.sources import PreparedSplit, data_format, prepare_split
from training.data.split import LeakageError, Split, SplitError

PNEUMONIAMNIST = SHARED_DATA / "pneumoniamnist_trainval.npz"
PATIENT = r"(?P<patient>patient\d+)"


def _config(data: Path, **values: Any) -> TrainConfig:
    return TrainConfig(data_dir=data, **values)


def _film(seed: int, size: int = 24) -> bytes:
    return png_bytes(chest_like(size, size, seed=seed))


def _parts(split: Split) -> dict[str, list[Any]]:
    return {name: samples for name, samples in split.parts().items() if samples}


def _disjoint(split: Split) -> None:
    train, val, test = (
        {(s.path, s.item) for s in part} for part in (split.train, split.validation, split.test)
    )
    assert train.isdisjoint(val) and train.isdisjoint(test) and val.isdisjoint(test)
    hashes = [{s.content_sha256 for s in part} for part in (split.train, split.validation, split.test)]
    assert hashes[0].isdisjoint(hashes[1]) and hashes[0].isdisjoint(hashes[2])
    assert hashes[1].isdisjoint(hashes[2])


# --- folder trees ---------------------------------------------------------------------------------


def _covid_tree(root: Path, per_class: int = 6) -> Path:
    """The COVID-19 Radiography layout: <class>/images/<class>-<i>.png beside <class>/masks/."""
    for c, name in enumerate(("COVID", "Normal", "Viral Pneumonia")):
        for sub in ("images", "masks"):
            (root / name / sub).mkdir(parents=True)
        for i in range(per_class):
            (root / name / "images" / f"{name}-{i + 1}.png").write_bytes(_film(100 * c + i))
            (root / name / "masks" / f"{name}-{i + 1}.png").write_bytes(_film(10_000 + 100 * c + i))
    (root / "COVID.metadata.csv").write_text("FILE NAME,FORMAT\n")  # beside the class folders
    return root


def test_covid_layout_reads_images_and_ignores_masks(tmp_path: Path) -> None:
    root = _covid_tree(tmp_path)
    prepared = prepare_split(_config(root, split_method="image", val_fraction=0.34))
    assert prepared.class_names == ["COVID", "Normal", "Viral Pneumonia"]
    samples = [*prepared.split.train, *prepared.split.validation]
    assert len(samples) == 18
    assert all(s.path.parent.name == "images" and s.patient == NO_PATIENT for s in samples)
    assert Counter(s.label for s in prepared.split.validation) == {0: 2, 1: 2, 2: 2}
    assert prepared.method.startswith("by image")
    assert prepared.source == f"folder {root.resolve()}"


def test_file_names_without_patients_ask_for_image_split_or_a_pattern(tmp_path: Path) -> None:
    root = _covid_tree(tmp_path)
    with pytest.raises(DatasetLayoutError, match=r"COVID-1\.png.*patient_pattern.*split_method \"image\""):
        prepare_split(_config(root))  # auto = by patient, and the Kermany pattern matches nothing


def _three_class_tree(root: Path, patients: int = 10, films: int = 2) -> Path:
    for c, name in enumerate(("bacterial", "normal", "viral")):
        (root / name).mkdir(parents=True)
        for p in range(patients):
            for f in range(films):
                (root / name / f"patient{100 * c + p}_{f}.png").write_bytes(_film(1000 * c + 10 * p + f))
    return root


def test_three_class_folder_split_by_patient_70_15_15(tmp_path: Path) -> None:
    root = _three_class_tree(tmp_path, patients=20)
    config = _config(root, patient_pattern=PATIENT, val_fraction=0.15, test_fraction=0.15, seed=3)
    prepared = prepare_split(config)
    assert prepared.class_names == ["bacterial", "normal", "viral"]
    split = prepared.split
    for part, patients in (("train", 14), ("validation", 3), ("test", 3)):
        counts = Counter(s.label for s in split.parts()[part])
        assert counts == {0: 2 * patients, 1: 2 * patients, 2: 2 * patients}, part
    _disjoint(split)
    assert {s.patient for s in split.train}.isdisjoint({s.patient for s in split.test})
    assert prepared.method == (
        f"by patient (pattern {PATIENT!r}), stratified, val 0.15 / test 0.15, seed 3, "
        "no identical content across splits"
    )
    assert data_format(config) == "folder"


def test_class_names_fix_the_label_order_of_a_folder(tmp_path: Path) -> None:
    root = _three_class_tree(tmp_path, patients=3)
    prepared = prepare_split(
        _config(root, patient_pattern=PATIENT, class_names=["normal", "viral", "bacterial"])
    )
    assert prepared.class_names == ["normal", "viral", "bacterial"]
    assert all(s.path.parent.name == prepared.class_names[s.label] for s in prepared.split.train)
    with pytest.raises(DatasetLayoutError, match="must name each class folder"):
        prepare_split(_config(root, patient_pattern=PATIENT, class_names=["normal", "viral"]))


def test_a_class_without_validation_films_is_refused(tmp_path: Path) -> None:
    root = _three_class_tree(tmp_path, patients=3)
    for path in sorted((root / "viral").iterdir())[2:]:
        path.unlink()  # one patient left: it can only be in train
    with pytest.raises(SplitError, match=r"\['viral'\] have no film in validation"):
        prepare_split(_config(root, patient_pattern=PATIENT))


def test_a_folder_has_no_given_split(tmp_path: Path) -> None:
    with pytest.raises(SplitError, match="no split of its own"):
        prepare_split(_config(_three_class_tree(tmp_path, patients=3), split_method="given"))


# --- MedMNIST .npz --------------------------------------------------------------------------------


def _rows(count: int, size: int, rgb: bool, seed: int) -> npt.NDArray[np.uint8]:
    rng = np.random.default_rng(seed)
    shape = (count, size, size, 3) if rgb else (count, size, size)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _write_npz(
    path: Path, size: int = 28, rgb: bool = False, counts: tuple[int, ...] = (12, 6, 4), classes: int = 2
) -> Path:
    arrays: dict[str, npt.NDArray[Any]] = {}
    for i, (split, count) in enumerate(zip(("train", "val", "test"), counts, strict=False)):
        arrays[f"{split}_images"] = _rows(count, size, rgb, seed=i)
        labels = np.arange(count, dtype=np.uint8) % classes
        arrays[f"{split}_labels"] = labels[:, np.newaxis] if i % 2 == 0 else labels  # (N, 1) and (N,)
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize(("size", "rgb"), [(28, False), (64, False), (28, True), (64, True)])
def test_npz_uses_its_own_split_and_loads_through_the_contract(tmp_path: Path, size: int, rgb: bool) -> None:
    path = _write_npz(tmp_path / "pneumoniamnist_64.npz", size, rgb)
    prepared = prepare_split(_config(path))
    assert prepared.class_names == ["normal", "pneumonia"]  # MedMNIST's names, from the file name
    assert {k: len(v) for k, v in _parts(prepared.split).items()} == {"train": 12, "validation": 6, "test": 4}
    assert prepared.method == "given by the file (train/val/test arrays), no identical content across splits"
    assert prepared.source.endswith(f"({size}x{size} {'RGB' if rgb else 'gray'})")
    val = prepared.split.validation
    assert [s.item for s in val[:2]] == ["val:0", "val:1"] and [s.label for s in val[:2]] == [0, 1]
    dataset = FilmDataset(val, 32, 32)
    row = np.load(path)["val_images"][1]
    np.testing.assert_array_equal(dataset.inputs[1].numpy(), to_model_input(decode_array(row), 32, 32))
    assert dataset.inputs.shape == (6, 1, 32, 32)


def test_npz_file_is_read_once_for_all_its_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write_npz(tmp_path / "x.npz")
    samples = scan_npz(path).samples
    opened: list[Path] = []
    real_load = np.load

    def counting_load(file: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(file)
        return real_load(file, *args, **kwargs)

    monkeypatch.setattr(np, "load", counting_load)
    dataset = FilmDataset(samples, 16, 16)
    assert len(dataset) == 22
    assert opened == [path]


def test_npz_class_names_from_config_else_numbered(tmp_path: Path) -> None:
    path = _write_npz(tmp_path / "mydata.npz", classes=3, counts=(12, 6))
    assert prepare_split(_config(path)).class_names == ["class_0", "class_1", "class_2"]
    names = ["a", "b", "c"]
    assert prepare_split(_config(path, class_names=names)).class_names == names
    with pytest.raises(DatasetLayoutError, match="labels up to 2"):
        prepare_split(_config(path, class_names=["a", "b"]))
    organs = _write_npz(tmp_path / "organamnist.npz", classes=11, counts=(22, 11))
    assert prepare_split(_config(organs)).class_names[:3] == ["bladder", "femur-left", "femur-right"]


def test_npz_refuses_a_ratio_test_split_on_top_of_its_own_and_a_patient_split(tmp_path: Path) -> None:
    path = _write_npz(tmp_path / "x.npz", counts=(12, 6))
    with pytest.raises(SplitError, match=r"test_fraction 0\.2 would mix"):
        prepare_split(_config(path, test_fraction=0.2))
    with pytest.raises(SplitError, match="no patient ids"):
        prepare_split(_config(path, split_method="patient"))


def test_npz_image_split_pools_the_files_splits(tmp_path: Path) -> None:
    path = _write_npz(tmp_path / "x.npz", counts=(20, 10, 10))
    prepared = prepare_split(_config(path, split_method="image", val_fraction=0.2, test_fraction=0.2))
    assert {k: len(v) for k, v in _parts(prepared.split).items()} == {"train": 24, "validation": 8, "test": 8}
    assert prepared.method.startswith("by image, the file's own splits pooled")
    _disjoint(prepared.split)


def test_npz_given_split_that_leaks_a_copy_is_refused_naming_it(tmp_path: Path) -> None:
    path = _write_npz(tmp_path / "x.npz", counts=(12, 6))
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["val_images"][4] = arrays["train_images"][3]
    np.savez(path, **arrays)
    with pytest.raises(LeakageError, match=r"x\.npz\[train:3\] \(train\) == x\.npz\[val:4\] \(validation\)"):
        prepare_split(_config(path))
    # Re-split by image, the copy and its original stay together.
    prepared = prepare_split(_config(path, split_method="image"))
    _disjoint(prepared.split)


def test_npz_multi_label_and_malformed_files_are_refused(tmp_path: Path) -> None:
    labels = np.zeros((4, 14), dtype=np.uint8)
    np.savez(tmp_path / "chestmnist.npz", train_images=_rows(4, 28, False, 0), train_labels=labels)
    with pytest.raises(DatasetLayoutError, match="multi-label"):
        scan_npz(tmp_path / "chestmnist.npz")
    np.savez(tmp_path / "no_train.npz", val_images=_rows(4, 28, False, 0), val_labels=np.zeros(4, np.uint8))
    with pytest.raises(DatasetLayoutError, match="no train_images"):
        scan_npz(tmp_path / "no_train.npz")
    np.savez(tmp_path / "floats.npz", train_images=np.zeros((4, 8, 8)), train_labels=np.zeros(4, np.uint8))
    with pytest.raises(DatasetLayoutError, match="uint8/uint16"):
        scan_npz(tmp_path / "floats.npz")


# --- CSV manifests --------------------------------------------------------------------------------


def _write_manifest(root: Path, rows: list[dict[str, str]], name: str = "manifest.csv") -> Path:
    path = root / name
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _films(root: Path, count: int) -> list[Path]:
    (root / "films").mkdir(exist_ok=True)
    paths = [root / "films" / f"patient{i // 2}_{i}.png" for i in range(count)]
    for i, path in enumerate(paths):
        path.write_bytes(_film(i))
    return paths


def test_csv_without_patient_or_split_columns_splits_by_the_patient_pattern(tmp_path: Path) -> None:
    paths = _films(tmp_path, 40)
    rows = [
        {"path": f"films/{p.name}", "label": "sick" if i % 4 >= 2 else "well"} for i, p in enumerate(paths)
    ]
    manifest = _write_manifest(tmp_path, rows)
    prepared = prepare_split(_config(manifest, patient_pattern=PATIENT, val_fraction=0.2))
    assert prepared.class_names == ["sick", "well"]
    assert prepared.source == f"CSV manifest {manifest.resolve()}"
    assert prepared.method.startswith(f"by patient (pattern {PATIENT!r}), stratified")
    assert Counter(s.label for s in prepared.split.validation) == {0: 4, 1: 4}  # 2 of 10 patients, 2 films
    assert {s.patient for s in prepared.split.train}.isdisjoint(
        {s.patient for s in prepared.split.validation}
    )
    image = prepare_split(_config(manifest, split_method="image"))
    assert image.method.startswith("by image") and {s.patient for s in image.split.train} == {NO_PATIENT}


def test_csv_patient_column_and_absolute_paths(tmp_path: Path) -> None:
    paths = _films(tmp_path, 24)
    rows = [{"path": str(p), "label": "ab"[i % 2], "patient": f"P{i % 6}"} for i, p in enumerate(paths)]
    manifest = _write_manifest(tmp_path / "films", rows)  # absolute paths, CSV elsewhere
    prepared = prepare_split(_config(manifest, val_fraction=0.34))
    assert prepared.method.startswith("by patient (patient column)")
    split = prepared.split
    assert {s.patient for s in split.train}.isdisjoint({s.patient for s in split.validation})
    assert len(split.train) + len(split.validation) == 24


def test_csv_split_column_is_used_as_given_and_checked(tmp_path: Path) -> None:
    paths = _films(tmp_path, 12)
    names = ["train", "val", "validation", "test"]
    rows = [
        {"path": f"films/{p.name}", "label": "ab"[i % 2], "patient": f"P{i}", "split": names[i // 3]}
        for i, p in enumerate(paths)
    ]
    manifest = _write_manifest(tmp_path, rows)
    prepared = prepare_split(_config(manifest))
    assert {k: len(v) for k, v in _parts(prepared.split).items()} == {"train": 3, "validation": 6, "test": 3}
    assert (
        prepared.method
        == "given by the manifest's split column, no patients and identical content across splits"
    )
    rows[0]["patient"] = rows[5]["patient"]  # one patient in train and validation
    with pytest.raises(LeakageError, match=r"patient.*both train and validation"):
        prepare_split(_config(_write_manifest(tmp_path, rows, "leaky.csv")))


def test_csv_errors_name_the_line(tmp_path: Path) -> None:
    paths = _films(tmp_path, 4)
    rows = [{"path": f"films/{p.name}", "label": "ab"[i % 2], "split": "train"} for i, p in enumerate(paths)]
    rows[2]["split"] = "holdout"
    with pytest.raises(DatasetLayoutError, match=r"line 4: split 'holdout'"):
        prepare_split(_config(_write_manifest(tmp_path, rows)))
    rows[2] = {"path": "films/missing.png", "label": "a", "split": "train"}
    with pytest.raises(DatasetLayoutError, match=r"line 4: .*missing\.png"):
        prepare_split(_config(_write_manifest(tmp_path, rows)))
    with pytest.raises(DatasetLayoutError, match=r"lacks the column\(s\) \['label'\]"):
        prepare_split(_config(_write_manifest(tmp_path, [{"path": "films/x.png"}])))
    with pytest.raises(DatasetLayoutError, match=r"labels \['b'\] are not in class_names"):
        prepare_split(_config(_write_manifest(tmp_path, rows[:2]), class_names=["a", "c"]))


def test_data_format_auto_by_what_data_dir_is(tmp_path: Path) -> None:
    assert data_format(_config(tmp_path)) == "folder"
    assert data_format(_config(_write_npz(tmp_path / "x.npz"))) == "npz"
    (tmp_path / "m.csv").write_text("path,label\n")
    assert data_format(_config(tmp_path / "m.csv")) == "csv"
    assert data_format(_config(tmp_path / "m.csv", data_format="folder")) == "folder"
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        data_format(_config(tmp_path / "missing"))


# --- the real data (skipped where ../shared/data is absent) ---------------------------------------


@pytest.fixture(scope="module")
def pneumoniamnist() -> Path:
    if not PNEUMONIAMNIST.is_file():
        pytest.skip(f"PneumoniaMNIST not found at {PNEUMONIAMNIST} (see ../shared/data/README.md)")
    return PNEUMONIAMNIST


def test_real_pneumoniamnist_loads_its_train_and_val(pneumoniamnist: Path) -> None:
    source = scan_npz(pneumoniamnist)
    assert source.class_names == ["normal", "pneumonia"]
    assert Counter(source.given_splits) == {"train": 4708, "validation": 524}
    train_labels = Counter(
        s.label for s, g in zip(source.samples, source.given_splits, strict=True) if g == "train"
    )
    assert train_labels == {0: 1214, 1: 3494}
    assert source.image_shape == (28, 28)


def test_real_pneumoniamnist_own_split_leaks_copies_so_it_is_resplit_by_image(pneumoniamnist: Path) -> None:
    # MedMNIST's own train/val split puts 8 byte-identical films on both sides: refused as given.
    with pytest.raises(LeakageError, match=r"8 identical image\(s\) appear in both train and validation"):
        prepare_split(_config(pneumoniamnist))
    prepared: PreparedSplit = prepare_split(_config(pneumoniamnist, split_method="image", val_fraction=0.1))
    assert prepared.class_names == ["normal", "pneumonia"]
    assert len(prepared.split.train) + len(prepared.split.validation) == 4708 + 524
    _disjoint(prepared.split)


def test_real_kermany_split_70_15_15_by_patient(kermany_train: Path) -> None:
    prepared = prepare_split(_config(kermany_train, val_fraction=0.15, test_fraction=0.15))
    split = prepared.split
    assert prepared.class_names == ["NORMAL", "PNEUMONIA"]
    assert sum(len(part) for part in split.parts().values()) == 5216
    patients = [{s.patient for s in part} for part in split.parts().values()]
    assert patients[0].isdisjoint(patients[1]) and patients[0].isdisjoint(patients[2])
    assert patients[1].isdisjoint(patients[2])
    _disjoint(split)
    for part, share in (("validation", 0.15), ("test", 0.15)):
        assert abs(len(split.parts()[part]) / 5216 - share) < 0.02
        pneumonia = Counter(s.label for s in split.parts()[part])[1] / len(split.parts()[part])
        assert abs(pneumonia - 3875 / 5216) < 0.03
