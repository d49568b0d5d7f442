"""Session fixtures: a tiny but real model, trained for a few steps by the training package on
synthetic films built in code and exported to ONNX exactly as the default model is."""

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.factories import KERMANY_TRAIN, chest_like, png_bytes

if TYPE_CHECKING:
    from training.config import TrainConfig

TINY_SIZE = 64
TINY_CLASSES = ("NORMAL", "PNEUMONIA")


def write_tiny_dataset(root: Path, per_class: int = 24) -> Path:
    """Two classes that differ by a bright 'consolidation' in the left lung; two films per patient."""
    yy, xx = np.mgrid[0:TINY_SIZE, 0:TINY_SIZE]
    opacity = np.exp(-(((xx - 20) / 7.0) ** 2 + ((yy - 32) / 9.0) ** 2))
    for label, name in enumerate(TINY_CLASSES):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            plane = chest_like(TINY_SIZE, TINY_SIZE, seed=1000 * label + i)
            if label == 1:
                plane = np.clip(plane + 0.6 * opacity, 0.0, 1.0)
            (folder / f"person{100 * label + i // 2}_film_{i}.png").write_bytes(png_bytes(plane))
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny-data"))


def tiny_train_config(data_dir: Path, output_dir: Path, run_name: str, **fields: Any) -> "TrainConfig":
    """A baseline CNN on small synthetic films, seconds on a CPU; ``fields`` override TrainConfig's."""
    from training.config import TrainConfig

    defaults: dict[str, Any] = {
        "backbone": "baseline_cnn",
        "weights": "none",
        "image_size": TINY_SIZE,
        "patient_pattern": r"(?P<patient>person\d+)",
        "batch_size": 8,
        "head_epochs": 0,
        "finetune_epochs": 4,
        "finetune_lr": 3e-3,
        "patience": 4,
        "threads": 2,
    }
    return TrainConfig(data_dir=data_dir, output_dir=output_dir, run_name=run_name, **{**defaults, **fields})


@pytest.fixture(scope="session")
def tiny_run_dir(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.fit.engine import train

    config = tiny_train_config(
        tiny_dataset, tmp_path_factory.mktemp("runs"), "tiny", head_epochs=1, head_lr=3e-3
    )
    return train(config).run_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<store>/cxr-pneumonia/1/`` with a real model.onnx and model_card.json.

    Without the OOD detector: its threshold, set on 8 validation films, would refuse the service
    tests' synthetic films; ``tiny_ood_model_dir`` is the same run with the detector.
    """
    from training.export.exporter import export_run

    return export_run(tiny_run_dir, tmp_path_factory.mktemp("store"), "cxr-pneumonia", "1", ood=False)


@pytest.fixture(scope="session")
def tiny_ood_model_dir(tiny_run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.export.exporter import export_run

    # No annotated copies in the gate's fit: with 8 synthetic validation films they would be most of it.
    return export_run(
        tiny_run_dir, tmp_path_factory.mktemp("store-ood"), "cxr-pneumonia", "1", annotated_share=0.0
    )


@pytest.fixture(scope="session")
def kermany_train() -> Path:
    if not KERMANY_TRAIN.is_dir():
        pytest.skip(f"Kermany training data not found at {KERMANY_TRAIN} (see ../shared/data/README.md)")
    return KERMANY_TRAIN
