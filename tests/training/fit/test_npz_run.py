"""A three-class RGB .npz study, end to end: given splits (one leaked copy dropped on request),
training with oversampling and L1, calibration, the held-out test split, export, the same evaluation
for checkpoint and ONNX, and the publish path reading the same films."""

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from service.inference.runtime import ModelRuntime
from service.settings import Settings
from tests.factories import chest_like
from training.config import TrainConfig
from training.data.dataset import FilmDataset
from training.evaluation import evaluate_run
from training.evaluation.films import films_from_run
from training.export.exporter import export_run
from training.fit import run_folder
from training.fit.engine import train

SIZE = 32
CLASSES = ["clear", "left", "right"]


def _films(count: int, seed: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """RGB films; class 1 has an opacity on the left lung, class 2 on the right."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images, labels = [], []
    for i in range(count):
        label = i % 3
        plane = chest_like(SIZE, SIZE, seed=seed * 1000 + i)
        if label:
            centre = 10 if label == 1 else 22
            plane = np.clip(
                plane + 0.7 * np.exp(-(((xx - centre) / 4.0) ** 2 + ((yy - 16) / 5.0) ** 2)), 0, 1
            )
        images.append(np.repeat((plane * 255).astype(np.uint8)[..., None], 3, axis=2))
        labels.append(label)
    return np.stack(images), np.array(labels, dtype=np.uint8)[:, None]


@pytest.fixture(scope="module")
def npz_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    train_images, train_labels = _films(150, 1)
    val_images, val_labels = _films(30, 2)
    test_images, test_labels = _films(30, 3)
    val_images[0] = train_images[0]  # a copy across splits, as MedMNIST's own files have
    val_labels[0] = train_labels[0]
    path = tmp_path_factory.mktemp("npz") / "opacities.npz"
    np.savez(
        path,
        train_images=train_images,
        train_labels=train_labels,
        val_images=val_images,
        val_labels=val_labels,
        test_images=test_images,
        test_labels=test_labels,
    )
    return path


@pytest.fixture(scope="module")
def npz_run(npz_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = TrainConfig(
        data_dir=npz_file,
        class_names=CLASSES,
        drop_leaked_copies=True,
        backbone="baseline_cnn",
        weights="none",
        image_size=SIZE,
        batch_size=16,
        head_epochs=0,
        finetune_epochs=10,
        finetune_lr=3e-3,
        patience=10,
        imbalance="oversample",
        l1=1e-6,
        optimizer="adam",
        output_dir=tmp_path_factory.mktemp("runs"),
        run_name="npz",
        threads=2,
    )
    return train(config).run_dir


def test_three_class_npz_run_records_split_calibration_and_test(npz_run: Path) -> None:
    summary = run_folder.read_summary(npz_run)
    assert summary.class_names == CLASSES
    assert (
        "1 validation/test films identical to earlier-split films dropped"
        in summary.training_data.split_method
    )
    assert summary.training_data.splits["validation"].images == 29
    assert summary.training_data.splits["test"].images == 30
    assert summary.training_data.splits["train"].patients == 0  # an .npz names no patients
    assert summary.decision_threshold is None  # three classes: argmax
    assert summary.calibration is not None
    assert (
        summary.calibration.validation_cross_entropy_after
        <= summary.calibration.validation_cross_entropy_before
    )
    assert summary.test_metrics is not None
    assert (summary.test_metrics["auc"] or 0) > 0.8  # one-vs-rest, macro
    assert (summary.test_metrics["accuracy"] or 0) > (summary.majority_baseline["accuracy"] or 1)


def test_checkpoint_and_exported_model_score_the_test_split_alike(npz_run: Path, tmp_path: Path) -> None:
    model_dir = export_run(npz_run, tmp_path / "store", "opacities", "1")
    checkpoint = evaluate_run(npz_run, split="test", out_dir=tmp_path / "pt")
    onnx = evaluate_run(npz_run, split="test", model_dir=model_dir, out_dir=tmp_path / "onnx")
    assert checkpoint.n == onnx.n == 30
    assert checkpoint.scores.confusion_matrix == onnx.scores.confusion_matrix
    assert checkpoint.scores.metrics["auc"] == pytest.approx(onnx.scores.metrics["auc"], abs=1e-6)
    assert len(onnx.scores.per_class) == 3 and not onnx.collapsed
    for name in ("report.md", "roc.png", "confusion_matrix.png", "reliability.png", "gradcam_gallery.png"):
        assert (tmp_path / "onnx" / name).stat().st_size > 0, name
    # The service serves a three-class model unchanged: argmax, no binary operating point.
    runtime = ModelRuntime.load(Settings(model_dir=model_dir, execution_provider="cpu"))
    assert runtime.threshold is None and runtime.card.class_names == CLASSES
    film = FilmDataset([row.sample(CLASSES) for row in run_folder.read_split(npz_run)][:1], SIZE, SIZE)
    inference = runtime.infer(film.inputs.numpy()[0])
    assert inference.probabilities.shape == (3,) and inference.cams.shape[0] == 3


def test_publish_reads_the_run_films_through_the_same_contract(npz_run: Path) -> None:
    films = films_from_run(npz_run, CLASSES)
    rows = [row for row in run_folder.read_split(npz_run) if row.split == "validation"]
    expected = FilmDataset([row.sample(CLASSES) for row in rows], SIZE, SIZE).inputs.numpy()
    assert np.array_equal(films.inputs(SIZE, SIZE), expected)
