import re
from pathlib import Path

import pytest

from tests.factories import chest_like, png_bytes
from training.config import KERMANY_PATIENT_PATTERN
from training.data.scan import NO_PATIENT, DatasetLayoutError, Sample, patient_of, scan_folder


@pytest.mark.parametrize(
    ("filename", "patient"),
    [
        ("person1000_bacteria_2931.jpeg", "person1000"),
        ("person447_virus_921_1.jpeg", "person447"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("NORMAL2-IM-0115-0001.jpeg", "IM-0115"),
    ],
)
def test_kermany_patient_pattern(filename: str, patient: str) -> None:
    assert patient_of(filename, re.compile(KERMANY_PATIENT_PATTERN)) == patient


def test_unmatched_file_name_is_an_error_naming_the_file_and_the_remedies() -> None:
    with pytest.raises(DatasetLayoutError, match=r"scan_0001\.png.*patient_pattern.*split_method \"image\""):
        patient_of("scan_0001.png", re.compile(KERMANY_PATIENT_PATTERN))


def test_scan_reads_classes_from_folder_names_and_hashes_content(tmp_path: Path) -> None:
    for name in ("PNEUMONIA", "NORMAL"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"person1_{name}_1.png").write_bytes(png_bytes(chest_like(seed=len(name))))
    (tmp_path / "NORMAL" / "notes.txt").write_text("ignored")
    scanned = scan_folder(tmp_path)
    assert scanned.class_names == ["NORMAL", "PNEUMONIA"]
    assert [s.label for s in scanned.samples] == [0, 1]
    assert len({s.content_sha256 for s in scanned.samples}) == 2


def test_scan_reads_a_class_images_subfolder_and_ignores_masks(tmp_path: Path) -> None:
    """The COVID-19 Radiography layout, mixed with a plain class folder."""
    for sub in ("COVID/images", "COVID/masks", "Normal"):
        (tmp_path / sub).mkdir(parents=True)
    (tmp_path / "COVID" / "images" / "COVID-1.png").write_bytes(png_bytes(chest_like(seed=1)))
    (tmp_path / "COVID" / "masks" / "COVID-1.png").write_bytes(png_bytes(chest_like(seed=2)))
    (tmp_path / "Normal" / "Normal-1.png").write_bytes(png_bytes(chest_like(seed=3)))
    scanned = scan_folder(tmp_path, patient_pattern=None)
    assert scanned.class_names == ["COVID", "Normal"]
    assert [s.path.relative_to(tmp_path).as_posix() for s in scanned.samples] == [
        "COVID/images/COVID-1.png",
        "Normal/Normal-1.png",
    ]
    assert {s.patient for s in scanned.samples} == {NO_PATIENT}
    with pytest.raises(DatasetLayoutError, match=r"COVID-1\.png"):
        scan_folder(tmp_path)  # the Kermany pattern finds no patient in these names


def test_sample_keeps_its_four_field_form_and_names_container_items() -> None:
    film = Sample(Path("a/b.png"), 0, "p1", "0" * 64)
    assert film.item is None and film.name == "b.png"
    row = Sample(Path("d/pneumoniamnist.npz"), 1, NO_PATIENT, "1" * 64, "val:12")
    assert row.name == "pneumoniamnist.npz[val:12]"


def test_scan_refuses_a_folder_without_class_subfolders(tmp_path: Path) -> None:
    (tmp_path / "only").mkdir()
    with pytest.raises(DatasetLayoutError, match="one sub-folder per class"):
        scan_folder(tmp_path)
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        scan_folder(tmp_path / "missing")


def test_scan_of_the_real_kermany_split(kermany_train: Path) -> None:
    scanned = scan_folder(kermany_train)
    assert scanned.class_names == ["NORMAL", "PNEUMONIA"]
    counts = [sum(s.label == label for s in scanned.samples) for label in (0, 1)]
    assert counts == [1341, 3875]
