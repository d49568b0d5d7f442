"""Near-duplicate grouping for sources without patient ids (the COVID-19 radiography set): a film and
its re-encoded, resized copy never straddle splits; ratio splits are stratified, seeded and sized."""

import io
from collections import Counter
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from service.contract import load_model_input
from tests.factories import png_bytes
from training.config import TrainConfig
from training.data.near_duplicates import difference_hash
from training.data.scan import NO_PATIENT, Sample, scan_folder
from training.data.sources import prepare_split
from training.data.split import Split, near_duplicate_groups, split_by_image

FILMS_PER_CLASS = 25
COPIED = 10  # the first films of each class also exist as a smaller, lossy copy


def _film(seed: int) -> npt.NDArray[np.float64]:
    """A smooth random field: distinct films differ in ~128 of 256 hash bits, unlike chest_like's."""
    small = np.random.default_rng(seed).random((8, 8)).astype(np.float32)
    smooth = Image.fromarray(small).resize((80, 96), Image.Resampling.BICUBIC)
    return np.asarray(smooth, np.float64).clip(0, 1)


def _lossy_copy(plane: npt.NDArray[np.float64]) -> bytes:
    image = Image.fromarray((plane * 255).astype(np.uint8)).resize((40, 48), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=50)
    return buffer.getvalue()


def _copies_folder(root: Path) -> Path:
    for label, name in enumerate(("COVID", "Normal")):
        (root / name).mkdir(parents=True)
        for i in range(FILMS_PER_CLASS):
            plane = _film(1000 * label + i)
            (root / name / f"{name}-{i}.png").write_bytes(png_bytes(plane))
            if i < COPIED:
                (root / name / f"{name}-{i}-copy.jpg").write_bytes(_lossy_copy(plane))
    return root


def _original(sample: Sample) -> str:
    return sample.path.stem.removesuffix("-copy")


def _where(split: Split) -> dict[str, set[str]]:
    """Original film -> the splits it or its copy sits in."""
    where: dict[str, set[str]] = {}
    for name, part in split.parts().items():
        for s in part:
            where.setdefault(_original(s), set()).add(name)
    return where


def _config(data: Path, seed: int, method: str = "near_duplicate") -> TrainConfig:
    return TrainConfig(
        data_dir=data,
        split_method=method,
        val_fraction=0.16,
        test_fraction=0.16,
        seed=seed,
        backbone="baseline_cnn",
        weights="none",
        image_size=64,
    )


def test_groups_join_each_film_with_its_copy_and_nothing_else(tmp_path: Path) -> None:
    samples = scan_folder(_copies_folder(tmp_path), None).samples
    hashes = [difference_hash(load_model_input(s.path.read_bytes(), 64, 64)[0]) for s in samples]
    groups = near_duplicate_groups(samples, hashes, max_distance=12)
    members: dict[str, set[str]] = {}
    for sample, group in zip(samples, groups, strict=True):
        members.setdefault(group, set()).add(_original(sample))
    assert all(len(originals) == 1 for originals in members.values())  # no two films merged
    assert len(members) == 2 * FILMS_PER_CLASS  # and every copy found its film


def test_near_duplicate_split_68_16_16_never_puts_a_film_and_its_copy_apart(tmp_path: Path) -> None:
    data = _copies_folder(tmp_path)
    for seed in range(4):
        prepared = prepare_split(_config(data, seed))
        where = _where(prepared.split)
        assert all(len(splits) == 1 for splits in where.values()), seed
        for name, groups in (("validation", 4), ("test", 4), ("train", 17)):  # 16 % of 25 films = 4
            per_class = Counter(
                s.label for s in prepared.split.parts()[name] if not s.path.stem.endswith("-copy")
            )
            assert per_class == {0: groups, 1: groups}, (seed, name)
        assert "near-duplicate" in prepared.method
    assert prepare_split(_config(data, 0)).split == prepare_split(_config(data, 0)).split
    assert prepare_split(_config(data, 0)).split.test != prepare_split(_config(data, 1)).split.test


def test_an_image_split_alone_would_let_copies_straddle(tmp_path: Path) -> None:
    """Why the grouping is needed: byte identity misses a re-encoded copy."""
    data = _copies_folder(tmp_path)
    straddling = [
        film
        for seed in range(4)
        for film, splits in _where(prepare_split(_config(data, seed, "image")).split).items()
        if len(splits) > 1
    ]
    assert straddling


def _samples(counts: dict[int, int]) -> list[Sample]:
    return [
        Sample(Path(f"{label}-{i}.png"), label, NO_PATIENT, f"{label}-{i}-".ljust(64, "0"))
        for label, count in counts.items()
        for i in range(count)
    ]


@pytest.mark.parametrize(
    ("fractions", "counts", "expected"),
    [
        # covid19-radiography: 68/16/16 of 3,073 COVID and 3,962 normal films.
        ((0.16, 0.16), {0: 3073, 1: 3962}, {0: (2089, 492, 492), 1: (2694, 634, 634)}),
        # leukemia-all: 60/20/20 of Benign 432, Early 845, Pre 826, Pro 655.
        (
            (0.2, 0.2),
            {0: 432, 1: 845, 2: 826, 3: 655},
            {0: (260, 86, 86), 1: (507, 169, 169), 2: (496, 165, 165), 3: (393, 131, 131)},
        ),
    ],
)
def test_ratio_splits_are_stratified_seeded_and_sized(
    fractions: tuple[float, float], counts: dict[int, int], expected: dict[int, tuple[int, int, int]]
) -> None:
    split = split_by_image(_samples(counts), fractions[0], seed=0, test_fraction=fractions[1])
    for index, part in enumerate((split.train, split.validation, split.test)):
        assert Counter(s.label for s in part) == {label: sizes[index] for label, sizes in expected.items()}
    assert split_by_image(_samples(counts), fractions[0], seed=0, test_fraction=fractions[1]) == split
    other = split_by_image(_samples(counts), fractions[0], seed=1, test_fraction=fractions[1])
    assert other.test != split.test
