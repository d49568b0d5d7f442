"""One preprocessing contract: the same file gives the same tensor in training and in the service,
and the live service's probabilities equal the trained PyTorch model's on the training tensor."""

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from pydicom.uid import JPEG2000Lossless, RLELossless

from service.inference.runtime import ModelRuntime
from service.settings import Settings
from tests.factories import chest_like, dicom_bytes, dicom_dataset, jpeg_bytes, png_bytes
from training.data.dataset import FilmDataset
from training.data.scan import scan_folder
from training.fit.checkpoint import load_trained_model

PROBABILITY_TOLERANCE = 1e-4


def _write_films(root: Path) -> Path:
    """Every accepted encoding of a few films, as a training folder would hold them."""
    folder = root / "PNEUMONIA"
    folder.mkdir(parents=True)
    for seed in range(2):
        plane = chest_like(120, 100, seed=seed)
        films = {
            "png8.png": png_bytes(plane),
            "png16.png": png_bytes(plane, bits=16),
            "rgb.jpeg": jpeg_bytes(plane, rgb=True),
            "plain.dcm": dicom_bytes(dicom_dataset(plane)),
            "mono1.dcm": dicom_bytes(dicom_dataset(plane, photometric="MONOCHROME1")),
            "rle.dcm": dicom_bytes(dicom_dataset(plane), transfer_syntax=RLELossless),
            "j2k.dcm": dicom_bytes(
                dicom_dataset(plane, rescale=(2.0, -100.0)), transfer_syntax=JPEG2000Lossless
            ),
        }
        for name, data in films.items():
            (folder / f"person{seed}_{name}").write_bytes(data)
    (root / "NORMAL").mkdir()  # a folder needs two classes to be a dataset
    shutil.copy(folder / "person0_png8.png", root / "NORMAL" / "person9_copy.png")
    return root


@pytest.fixture(scope="module")
def film_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_films(tmp_path_factory.mktemp("films"))


def _runtime(model_dir: Path) -> ModelRuntime:
    return ModelRuntime.load(Settings(model_dir=model_dir, execution_provider="cpu"))


def test_training_dataset_and_service_produce_identical_tensors(
    film_folder: Path, tiny_model_dir: Path
) -> None:
    runtime = _runtime(tiny_model_dir)
    size = runtime.card.pixel_contract.height
    samples = scan_folder(film_folder, r"(?P<patient>person\d+)").samples
    dataset = FilmDataset(samples, size, size)
    assert len(dataset) == 15
    for index, sample in enumerate(samples):
        served, _ = runtime.prepare(sample.path.read_bytes(), max_pixels=10_000_000)
        trained, _ = dataset[index]
        assert served.dtype == np.float32
        assert np.array_equal(served, trained.numpy()), sample.path.name


def test_real_kermany_films_give_identical_tensors(kermany_train: Path, tiny_model_dir: Path) -> None:
    runtime = _runtime(tiny_model_dir)
    samples = [s for s in scan_folder(kermany_train).samples[::1000]]
    dataset = FilmDataset(samples, 64, 64)
    for index, sample in enumerate(samples):
        served, _ = runtime.prepare(sample.path.read_bytes(), max_pixels=10_000_000)
        assert np.array_equal(served, dataset[index][0].numpy()), sample.path.name


def test_live_service_probabilities_equal_the_trained_model(
    film_folder: Path, tiny_run_dir: Path, client: httpx.Client
) -> None:
    model, _, summary = load_trained_model(tiny_run_dir)
    samples = scan_folder(film_folder, r"(?P<patient>person\d+)").samples
    dataset = FilmDataset(samples, summary.image_size, summary.image_size)
    with torch.no_grad():
        expected = torch.softmax(model(dataset.inputs) / summary.temperature, dim=1).numpy()
    for index, sample in enumerate(samples):
        response = client.post(
            "/v1/predict",
            params={"overlay": "false"},
            files={"file": ("upload.bin", sample.path.read_bytes())},
        )
        assert response.status_code == 200, response.text
        served = response.json()["probabilities"]
        got = np.array([served[name] for name in summary.class_names])
        assert np.max(np.abs(got - expected[index])) <= PROBABILITY_TOLERANCE, sample.path.name
