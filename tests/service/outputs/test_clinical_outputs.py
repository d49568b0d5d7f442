"""Issue 7 through a live server: triage level, the deployment-only threshold, out-of-distribution
refusal from the in-graph score, and results returned to PACS as DICOM SC / SR objects."""

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage

from service.contract import ModelCard
from service.contract.model_card import CARD_FILENAME
from service.inference.runtime import ModelRuntime
from service.settings import Settings
from tests.factories import dicom_bytes, dicom_dataset, png_bytes
from tests.service.live import live_client, post_file, strict_json
from training.fit.checkpoint import load_split, load_trained_model
from training.ood.film_set import noise_images


@pytest.fixture(scope="module")
def ood_client(tiny_ood_model_dir: Path, api_keys_file: Path) -> Iterator[httpx.Client]:
    yield from live_client(tiny_ood_model_dir, api_keys_file)


@pytest.fixture(scope="module")
def ood_card(tiny_ood_model_dir: Path) -> ModelCard:
    return ModelCard.model_validate_json((tiny_ood_model_dir / CARD_FILENAME).read_text())


@pytest.fixture(scope="module")
def film(tiny_ood_model_dir: Path, tiny_run_dir: Path) -> np.ndarray:
    """The training film the detector finds most typical, as a [0, 1] plane."""
    runtime = ModelRuntime.load(Settings(model_dir=tiny_ood_model_dir, execution_provider="cpu"))
    _, _, summary = load_trained_model(tiny_run_dir)
    samples = load_split(tiny_run_dir, summary.class_names, summary.image_size).train.samples

    def score(path: Path) -> float:
        tensor, _ = runtime.prepare(path.read_bytes(), 10_000_000)
        result = runtime.infer(tensor).ood_score
        assert result is not None
        return result

    best = min(samples, key=lambda s: score(s.path))
    with Image.open(best.path) as image:
        return np.asarray(image.convert("L"), dtype=np.float64) / 255.0


def test_response_carries_triage_and_the_ood_score(
    ood_client: httpx.Client, ood_card: ModelCard, film: np.ndarray
) -> None:
    response = post_file(ood_client, png_bytes(film), params={"overlay": "false"})
    assert response.status_code == 200, response.text
    body = strict_json(response)
    threshold = ood_card.decision_threshold
    assert threshold is not None and ood_card.ood is not None
    triage = body["triage"]
    urgent = body["predicted_class"] == threshold.positive_class
    assert triage["level"] == ("urgent" if urgent else "routine")
    assert triage["threshold"] == pytest.approx(threshold.value)
    assert triage["validation_sensitivity"] == pytest.approx(threshold.validation_sensitivity)
    assert triage["validation_specificity"] == pytest.approx(threshold.validation_specificity)
    assert threshold.positive_class in triage["meaning"]
    assert body["out_of_distribution"]["score"] <= ood_card.ood.threshold


def test_not_a_chest_film_is_refused_and_the_service_stays_healthy(
    ood_client: httpx.Client, film: np.ndarray
) -> None:
    for case in list(noise_images(1)):
        response = post_file(ood_client, case.png)
        assert response.status_code == 422, case.name
        assert strict_json(response)["code"] == "out_of_distribution"
    assert post_file(ood_client, png_bytes(film)).status_code == 200


@pytest.mark.parametrize("name", ["threshold", "decision_threshold", "Threshold"])
def test_the_threshold_cannot_be_set_per_request(
    ood_client: httpx.Client, film: np.ndarray, name: str
) -> None:
    response = post_file(ood_client, png_bytes(film), params={name: "0.01"})
    assert response.status_code == 422
    assert "CXR_DECISION_THRESHOLD" in strict_json(response)["detail"]


def test_a_deployment_override_is_applied_and_said(
    tiny_model_dir: Path, api_keys_file: Path, film: np.ndarray
) -> None:
    for client in live_client(tiny_model_dir, api_keys_file, decision_threshold=0.0):
        body = strict_json(post_file(client, png_bytes(film), params={"overlay": "false"}))
        assert body["triage"]["level"] == "urgent"  # p >= 0 always
        assert body["triage"]["validation_sensitivity"] is None
        assert "deployment override" in body["threshold"]["method"]
        assert strict_json(client.get("/v1/models"))["decision_threshold"]["value"] == 0.0


def _source(film: np.ndarray) -> tuple[bytes, pydicom.Dataset]:
    ds = dicom_dataset(film)
    return dicom_bytes(ds), ds


def test_accept_dicom_returns_the_overlay_as_a_secondary_capture(
    ood_client: httpx.Client, film: np.ndarray
) -> None:
    data, source = _source(film)
    response = ood_client.post(
        "/v1/predict", files={"file": ("x", data)}, headers={"Accept": "application/dicom"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom"
    sc = pydicom.dcmread(io.BytesIO(response.content))
    assert sc.SOPClassUID == SecondaryCaptureImageStorage
    assert sc.StudyInstanceUID == source.StudyInstanceUID
    assert sc.SeriesInstanceUID != source.SeriesInstanceUID
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert sc.PatientID == source.PatientID  # the result belongs to the same patient in PACS
    assert sc.pixel_array.shape[2] == 3


def test_result_sr_returns_a_structured_report(
    ood_client: httpx.Client, ood_card: ModelCard, film: np.ndarray
) -> None:
    data, source = _source(film)
    response = post_file(ood_client, data, params={"result": "sr"})
    assert response.status_code == 200, response.text
    sr = pydicom.dcmread(io.BytesIO(response.content))
    assert sr.SOPClassUID == ComprehensiveSRStorage
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == source.StudyInstanceUID
    referenced = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert referenced.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert ood_card.version in str(sr.ContentSequence)


def test_dicom_results_need_a_dicom_upload(ood_client: httpx.Client, film: np.ndarray) -> None:
    response = post_file(ood_client, png_bytes(film), params={"result": "sc"})
    assert response.status_code == 422
    assert strict_json(response)["code"] == "dicom_output_unavailable"
