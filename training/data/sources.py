"""One entry point from a ``TrainConfig`` to class names and a checked train/validation/test split.

Sources: a ``<class>/`` folder tree (``<class>/images/`` where present), a MedMNIST ``.npz`` file
or a CSV manifest. Methods: ``given`` (the source's own split), ``patient`` (grouped by patient id),
``image`` (each image a group, identical files grouped) and ``auto`` (given if the source has a split
of its own, else patient). Every split is refused if a patient or an identical film crosses it, and
if a class has no film in train or validation.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from training.config import TrainConfig
from training.data.inputs import load_inputs
from training.data.manifest import read_manifest, scan_manifest
from training.data.multi_source import HASH_SIDE, split_sources
from training.data.near_duplicates import difference_hash
from training.data.npz import NPZ_SPLITS, scan_npz
from training.data.scan import DatasetLayoutError, Sample, scan_folder
from training.data.split import (
    Split,
    SplitError,
    check_every_class,
    given_split,
    split_by_image,
    split_by_near_duplicate,
    split_by_patient,
)

DataFormat = Literal["folder", "npz", "csv"]
Method = Literal["given", "patient", "image", "near_duplicate"]


@dataclass(frozen=True)
class PreparedSplit:
    class_names: list[str]
    split: Split
    source: str  # what was read, e.g. "MedMNIST-style .npz /data/pneumoniamnist.npz (28x28 gray)"
    method: str  # how it was split, in words, for the model card


def data_format(config: TrainConfig) -> DataFormat:
    """``config.data_format``, or for ``auto`` what ``data_dir`` is: an .npz, a .csv or a folder."""
    path = config.data_dir
    if path is None:
        raise DatasetLayoutError("a multi-source config has no single data_dir")
    if config.data_format != "auto":
        return config.data_format
    if path.is_dir():
        return "folder"
    if path.is_file() and path.suffix.lower() in (".npz", ".csv"):
        return "npz" if path.suffix.lower() == ".npz" else "csv"
    if not path.exists():
        raise DatasetLayoutError(f"data_dir {path} does not exist.")
    raise DatasetLayoutError(
        f"data_dir {path} is neither a folder, an .npz file nor a .csv manifest; set data_format."
    )


def _method(config: TrainConfig, has_split: bool, what: str) -> Method:
    method = config.split_method
    if method == "auto":
        method = "given" if has_split else "patient"
    if method == "given" and not has_split:
        raise SplitError(f'{what} has no split of its own: set split_method "patient" or "image".')
    if method == "given" and config.test_fraction > 0:
        raise SplitError(
            f"{what} has a split of its own, which is used as given (split_method {config.split_method!r}); "
            f"test_fraction {config.test_fraction} would mix it with a ratio split. Set test_fraction 0 "
            '(the source\'s own test split, if any, is used), or split_method "patient" or "image".'
        )
    return method


def _ratios(config: TrainConfig) -> str:
    return (
        f"stratified, val {config.val_fraction:g} / test {config.test_fraction:g}, seed {config.seed}, "
        "no identical content across splits"
    )


def _ratio_split(config: TrainConfig, method: Method, samples: list[Sample]) -> Split:
    if method == "patient":
        return split_by_patient(samples, config.val_fraction, config.seed, config.test_fraction)
    if method == "near_duplicate":
        hashes = [difference_hash(plane) for plane in load_inputs(samples, HASH_SIDE, HASH_SIDE)]
        return split_by_near_duplicate(
            samples,
            hashes,
            config.val_fraction,
            config.seed,
            config.test_fraction,
            max_distance=config.near_duplicate_distance,
        )
    return split_by_image(samples, config.val_fraction, config.seed, config.test_fraction)


def _by_image(config: TrainConfig, method: Method) -> str:
    """How an image-level split was grouped, in words, for the model card."""
    if method == "near_duplicate":
        return (
            f"by near-duplicate group (256-bit difference hash within {config.near_duplicate_distance} bits, "
            f"identical files too), {_ratios(config)}"
        )
    return f"by image (identical files kept together), {_ratios(config)}"


def _folder(config: TrainConfig) -> tuple[list[str], Split, str, str]:
    root = _root(config)
    method = _method(config, has_split=False, what=f"The folder tree {root}")
    pattern = config.patient_pattern if method == "patient" else None
    scanned = scan_folder(root, pattern, config.class_names)
    split = _ratio_split(config, method, scanned.samples)
    how = (
        f"by patient (pattern {config.patient_pattern!r}), {_ratios(config)}"
        if method == "patient"
        else _by_image(config, method)
    )
    return scanned.class_names, split, f"folder {root.resolve()}", how


def _npz(config: TrainConfig) -> tuple[list[str], Split, str, str]:
    path = _root(config)
    source = scan_npz(path, config.class_names)
    what = f"The .npz file {path}"
    if config.split_method == "patient":
        raise SplitError(f'{what} has no patient ids: set split_method "given" (its own split) or "image".')
    method = _method(config, has_split=True, what=what)
    shape = source.image_shape
    size = f"{shape[1]}x{shape[0]} {'RGB' if len(shape) == 3 and shape[2] == 3 else 'gray'}" if shape else ""
    description = f"MedMNIST-style .npz {path.resolve()}" + (f" ({size})" if size else "")
    if method == "given":
        split = given_split(source.samples, source.given_splits, config.drop_leaked_copies)
        arrays = "/".join(key for key, name in NPZ_SPLITS.items() if name in source.given_splits)
        how = f"given by the file ({arrays} arrays), no identical content across splits{_dropped(split)}"
    else:
        split = _ratio_split(config, method, source.samples)
        how = (
            f"by image, the file's own splits pooled (identical rows kept together), {_ratios(config)}"
            if method == "image"
            else f"{_by_image(config, method)}, the file's own splits pooled"
        )
    return source.class_names, split, description, how


def _dropped(split: Split) -> str:
    if not split.dropped_copies:
        return ""
    return f" ({split.dropped_copies} validation/test films identical to earlier-split films dropped)"


def _csv(config: TrainConfig) -> tuple[list[str], Split, str, str]:
    path = _root(config)
    manifest = read_manifest(path)
    method = _method(config, has_split=manifest.has_split, what=f"The manifest {path}")
    pattern = config.patient_pattern if method == "patient" and not manifest.has_patient else None
    source = scan_manifest(manifest, config.class_names, pattern, patients=method in ("patient", "given"))
    patients = "patient column" if manifest.has_patient else f"pattern {config.patient_pattern!r}"
    if method == "given" and source.given_splits is not None:
        split = given_split(source.samples, source.given_splits, config.drop_leaked_copies)
        checked = "patients and identical content" if manifest.has_patient else "identical content"
        how = f"given by the manifest's split column, no {checked} across splits{_dropped(split)}"
    elif method == "patient":
        split = _ratio_split(config, method, source.samples)
        how = f"by patient ({patients}), {_ratios(config)}"
    else:
        split = _ratio_split(config, method, source.samples)
        how = _by_image(config, method)
    return source.class_names, split, f"CSV manifest {path.resolve()}", how


def _root(config: TrainConfig) -> Path:
    if config.data_dir is None:
        raise DatasetLayoutError("this reader needs data_dir")
    return config.data_dir


def _sources(config: TrainConfig) -> tuple[list[str], Split, str, str]:
    class_names, split, described = split_sources(config)
    how = (
        f"by group per (source, class): patients where a source names them, and films whose difference "
        f"hashes differ in <= {config.near_duplicate_distance} bits, across sources; {_ratios(config)} "
        "or near-identical"
    )
    return class_names, split, "sources: " + "; ".join(described), how


def prepare_split(config: TrainConfig) -> PreparedSplit:
    """Read ``config.data_dir`` (or every one of ``config.sources``) and split it as ``config`` says;
    every check applied."""
    if config.sources is not None:
        reader = _sources
    else:
        reader = {"folder": _folder, "npz": _npz, "csv": _csv}[data_format(config)]
    class_names, split, source, method = reader(config)
    if len(class_names) < 2:
        raise DatasetLayoutError(f"{source} has {len(class_names)} class(es); a classifier needs two.")
    check_every_class(split, class_names)
    return PreparedSplit(class_names, split, source, method)
