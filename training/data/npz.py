"""MedMNIST-style ``.npz`` files: ``{train,val,test}_images`` pixel arrays with ``*_labels``.

Rows are pixel arrays, not files: a ``Sample`` names its row with ``item`` ("val:12" = row 12 of
``val_images``) and is decoded by ``service.contract.decode_array``, the same contract as a PNG.
"""

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training.data.scan import NO_PATIENT, DatasetLayoutError, Sample

# The file's own splits, in order, and the split each one is used as.
NPZ_SPLITS = {"train": "train", "val": "validation", "test": "test"}
# Label names of the single-label grayscale MedMNIST v2 datasets, in label order (MedMNIST's INFO).
_ORGANS = [
    "bladder",
    "femur-left",
    "femur-right",
    "heart",
    "kidney-left",
    "kidney-right",
    "liver",
    "lung-left",
    "lung-right",
    "pancreas",
    "spleen",
]
MEDMNIST_CLASS_NAMES: dict[str, list[str]] = {
    "pneumoniamnist": ["normal", "pneumonia"],
    "breastmnist": ["malignant", "normal, benign"],
    "octmnist": ["choroidal neovascularization", "diabetic macular edema", "drusen", "normal"],
    "organamnist": _ORGANS,
    "organcmnist": _ORGANS,
    "organsmnist": _ORGANS,
}
_MEDMNIST_NAME = re.compile(r"^([a-z0-9]*mnist)", re.IGNORECASE)


@dataclass(frozen=True)
class NpzSource:
    path: Path
    class_names: list[str]
    samples: list[Sample]
    given_splits: list[str]  # per sample: "train", "validation" or "test"
    image_shape: tuple[int, ...]  # one row's shape, e.g. (28, 28) or (64, 64, 3)


def item_of(split: str, row: int) -> str:
    return f"{split}:{row}"


def parse_item(item: str) -> tuple[str, int]:
    """``"val:12"`` -> (``"val_images"``, 12)."""
    split, _, row = item.partition(":")
    if split not in NPZ_SPLITS or not row.isdigit():
        raise DatasetLayoutError(f"{item!r} is not an .npz item (expected e.g. 'train:12')")
    return f"{split}_images", int(row)


def array_sha256(array: npt.NDArray[np.generic]) -> str:
    """Content hash of one row: dtype and shape, then the pixel bytes."""
    header = f"{array.dtype.str}{array.shape}".encode()
    return hashlib.sha256(header + np.ascontiguousarray(array).tobytes()).hexdigest()


def default_class_names(path: Path, count: int) -> list[str]:
    """MedMNIST's names where the file name says which dataset it is (and the count fits)."""
    match = _MEDMNIST_NAME.match(path.name)
    names = MEDMNIST_CLASS_NAMES.get(match.group(1).lower()) if match else None
    if names is not None and count <= len(names):
        return list(names)
    return [f"class_{i}" for i in range(count)]


def _labels(data: np.lib.npyio.NpzFile, split: str, rows: int, path: Path) -> npt.NDArray[np.int64]:
    key = f"{split}_labels"
    if key not in data.files:
        raise DatasetLayoutError(f"{path} has {split}_images but no {key}.")
    labels = np.asarray(data[key])
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DatasetLayoutError(
            f"{path}: {key} has shape {labels.shape}; only single-label files, (N,) or (N, 1), are "
            "supported (multi-label files such as ChestMNIST are not)."
        )
    if labels.shape[0] != rows:
        raise DatasetLayoutError(f"{path}: {key} has {labels.shape[0]} labels for {rows} images.")
    if labels.dtype.kind not in "iu" or (labels.size and labels.min() < 0):
        raise DatasetLayoutError(f"{path}: {key} must hold non-negative integers (got {labels.dtype}).")
    return labels.astype(np.int64)


def _check_images(images: npt.NDArray[np.generic], key: str, path: Path) -> None:
    rgb = images.ndim == 4 and images.shape[3] in (1, 3)
    if not (images.ndim == 3 or rgb) or images.dtype not in (np.uint8, np.uint16):
        raise DatasetLayoutError(
            f"{path}: {key} must be uint8/uint16 of shape (N, H, W) or (N, H, W, 3); "
            f"got {images.dtype} {images.shape}."
        )


def scan_npz(path: Path, class_names: Sequence[str] | None = None) -> NpzSource:
    """Every row of the file's ``train``/``val``/``test`` arrays, with the split it came in."""
    if not path.is_file():
        raise DatasetLayoutError(f"Dataset file {path} does not exist.")
    samples: list[Sample] = []
    given: list[str] = []
    shapes: set[tuple[int, ...]] = set()
    with np.load(path, allow_pickle=False) as data:
        present = [split for split in NPZ_SPLITS if f"{split}_images" in data.files]
        if "train" not in present:
            raise DatasetLayoutError(
                f"{path} has no train_images (found {sorted(data.files)}); expected MedMNIST's "
                "train_images/train_labels, val_images/val_labels and optionally test_images/test_labels."
            )
        for split in present:
            images = np.asarray(data[f"{split}_images"])
            _check_images(images, f"{split}_images", path)
            labels = _labels(data, split, images.shape[0], path)
            shapes.add(images.shape[1:])
            for row, (image, label) in enumerate(zip(images, labels, strict=True)):
                samples.append(Sample(path, int(label), NO_PATIENT, array_sha256(image), item_of(split, row)))
                given.append(NPZ_SPLITS[split])
    count = max(s.label for s in samples) + 1
    if class_names is None:
        names = default_class_names(path, count)
    else:
        names = list(class_names)
        if count > len(names):
            raise DatasetLayoutError(
                f"{path} has labels up to {count - 1} but class_names names only {len(names)} classes."
            )
    return NpzSource(path, names, samples, given, next(iter(shapes)) if len(shapes) == 1 else ())


class NpzRows:
    """Rows of .npz files: each file opened once, and each of its arrays read once, on first use.

    A context manager: the files are closed on exit.
    """

    def __init__(self) -> None:
        self._files: dict[Path, np.lib.npyio.NpzFile] = {}
        self._arrays: dict[tuple[Path, str], npt.NDArray[np.generic]] = {}

    def __enter__(self) -> "NpzRows":
        return self

    def __exit__(self, *_: object) -> None:
        for data in self._files.values():
            data.close()
        self._files.clear()
        self._arrays.clear()

    def row(self, path: Path, item: str) -> npt.NDArray[np.generic]:
        key, index = parse_item(item)
        if (path, key) not in self._arrays:
            if path not in self._files:
                self._files[path] = np.load(path, allow_pickle=False)
            data = self._files[path]
            if key not in data.files:
                raise DatasetLayoutError(f"{path} has no {key} (asked for its item {item!r})")
            self._arrays[(path, key)] = np.asarray(data[key])
        row: npt.NDArray[np.generic] = self._arrays[(path, key)][index]
        return row
