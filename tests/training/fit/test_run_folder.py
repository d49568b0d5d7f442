"""split.csv: written with test rows and .npz items, read back (old files too) and by export."""

from pathlib import Path

import numpy as np

from tests.factories import chest_like, png_bytes
from training.data.npz import array_sha256
from training.data.scan import NO_PATIENT, Sample, sha256_bytes
from training.data.split import Split
from training.fit import run_folder
from training.fit.checkpoint import load_split

CLASSES = ["normal", "pneumonia"]


def _split(root: Path) -> Split:
    images = np.random.default_rng(0).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    npz = root / "films.npz"
    np.savez(npz, train_images=images[:2], train_labels=np.array([0, 1]), val_images=images[2:])
    rows = [Sample(npz, i % 2, NO_PATIENT, array_sha256(images[i]), f"train:{i}") for i in range(2)]
    val = [Sample(npz, i % 2, NO_PATIENT, array_sha256(images[2 + i]), f"val:{i}") for i in range(2)]
    film = root / "person7_1.png"
    film.write_bytes(png_bytes(chest_like(28, 28, seed=7)))
    test = [Sample(film, 1, "person7", sha256_bytes(film.read_bytes()))]
    return Split(rows, val, test)


def test_split_csv_round_trip_with_test_rows_and_npz_items(tmp_path: Path) -> None:
    split = _split(tmp_path)
    run_folder.write_split(tmp_path, split, CLASSES)
    rows = run_folder.read_split(tmp_path)
    assert [(r.split, r.item) for r in rows] == [
        ("train", "train:0"),
        ("train", "train:1"),
        ("validation", "val:0"),
        ("validation", "val:1"),
        ("test", None),
    ]
    read = {name: [r.sample(CLASSES) for r in rows if r.split == name] for name in split.parts()}
    resolved = {
        name: [Sample(s.path.resolve(), s.label, s.patient, s.content_sha256, s.item) for s in part]
        for name, part in split.parts().items()
    }
    assert read == resolved


def test_old_split_csv_without_the_item_column_still_reads(tmp_path: Path) -> None:
    (tmp_path / run_folder.SPLIT_FILE).write_text(
        "split,path,label,patient,sha256\ntrain,/data/NORMAL/IM-1-1.png,NORMAL,IM-1," + "0" * 64 + "\n"
    )
    (row,) = run_folder.read_split(tmp_path)
    assert (row.split, row.patient, row.item) == ("train", "IM-1", None)
    assert row.sample(["NORMAL", "PNEUMONIA"]) == Sample(Path("/data/NORMAL/IM-1-1.png"), 0, "IM-1", "0" * 64)


def test_export_reloads_npz_items_and_ignores_test_rows(tmp_path: Path) -> None:
    split = _split(tmp_path)
    run_folder.write_split(tmp_path, split, CLASSES)
    data = load_split(tmp_path, CLASSES, 28)
    assert [s.item for s in data.train.samples] == ["train:0", "train:1"]
    assert len(data.validation) == 2
    assert data.train.inputs.shape == (2, 1, 28, 28)
