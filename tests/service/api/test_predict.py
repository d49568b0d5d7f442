"""POST /v1/predict end to end over HTTP: every accepted format, the response schema, the overlay."""

import base64
import io
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

from service.contract import ModelCard, decode_image
from service.outputs.overlay import overlay_background, overlay_size
from tests.factories import chest_like, dicom_bytes, dicom_dataset, jpeg_bytes, png_bytes
from tests.service.live import TEST_OVERLAY_MAX_SIDE, post_file, strict_json

FILM = chest_like(96, 80, seed=3)


def _check_prediction(body: dict[str, Any], card: ModelCard) -> None:
    probabilities = body["probabilities"]
    assert isinstance(probabilities, dict)
    assert list(probabilities) == card.class_names
    values = list(probabilities.values())
    assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in values)
    assert math.isclose(sum(values), 1.0, abs_tol=1e-4)
    assert body["predicted_class"] in card.class_names
    assert body["model"] == {"name": card.name, "version": card.version}
    assert body["execution_provider"] == "CPUExecutionProvider"
    inference_ms = body["inference_ms"]
    assert isinstance(inference_ms, float) and inference_ms >= 0.0
    assert isinstance(body["request_id"], str) and body["request_id"]


def _decode_overlay(body: dict[str, Any]) -> Image.Image:
    gradcam = body["gradcam"]
    assert isinstance(gradcam, dict)
    image = Image.open(io.BytesIO(base64.b64decode(gradcam["png_base64"], validate=True)), formats=["PNG"])
    image.load()
    assert image.mode == "RGB"
    assert image.size == (gradcam["width"], gradcam["height"])
    assert gradcam["class_name"] == body["predicted_class"]
    return image


UPLOADS = {
    "png8": (png_bytes(FILM), "png"),
    "png16": (png_bytes(FILM, bits=16), "png"),
    "png-rgb": (png_bytes(FILM, mode="RGB"), "png"),
    "jpeg": (jpeg_bytes(FILM), "jpeg"),
    "dicom": (dicom_bytes(dicom_dataset(FILM)), "dicom"),
    "dicom-rle": (dicom_bytes(dicom_dataset(FILM), transfer_syntax=RLELossless), "dicom"),
    "dicom-j2k": (dicom_bytes(dicom_dataset(FILM), transfer_syntax=JPEG2000Lossless), "dicom"),
    "dicom-jpeg-baseline": (
        dicom_bytes(dicom_dataset(FILM, bits_stored=8), transfer_syntax=JPEGBaseline8Bit),
        "dicom",
    ),
    "dicom-monochrome1": (dicom_bytes(dicom_dataset(FILM, photometric="MONOCHROME1")), "dicom"),
}


@pytest.mark.parametrize("kind", list(UPLOADS))
def test_each_format_gives_a_prediction_and_overlay(client: httpx.Client, card: ModelCard, kind: str) -> None:
    data, source_format = UPLOADS[kind]
    response = post_file(client, data)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = strict_json(response)
    _check_prediction(body, card)
    assert body["image"] == {"source_format": source_format, "width": 80, "height": 96}
    if source_format == "dicom":
        dicom = body["dicom"]
        assert isinstance(dicom, dict)
        assert set(dicom) == {"study_instance_uid", "sop_instance_uid", "warnings"}
        assert dicom.pop("warnings") == []  # valid UIDs: nothing withheld
        assert all(isinstance(uid, str) and uid.startswith("1.") for uid in dicom.values())
    else:
        assert body["dicom"] is None
    overlay = _decode_overlay(body)
    assert overlay.size[::-1] == overlay_size(96, 80, TEST_OVERLAY_MAX_SIDE)  # (64, 53): longest side fits
    assert body["request_id"] == response.headers["x-request-id"]


def test_dicom_uids_are_echoed(client: httpx.Client) -> None:
    ds = dicom_dataset(FILM)
    body = strict_json(post_file(client, dicom_bytes(ds)))
    assert body["dicom"] == {
        "study_instance_uid": str(ds.StudyInstanceUID),
        "sop_instance_uid": str(ds.SOPInstanceUID),
        "warnings": [],
    }


def test_same_film_in_any_encoding_gets_the_same_answer(client: httpx.Client) -> None:
    """MONOCHROME1 (inverted storage) and 12-bit DICOM must reach the model as the same tensor."""
    monochrome2 = strict_json(post_file(client, dicom_bytes(dicom_dataset(FILM))))
    monochrome1 = strict_json(post_file(client, dicom_bytes(dicom_dataset(FILM, photometric="MONOCHROME1"))))
    png = strict_json(post_file(client, png_bytes(FILM, bits=16)))
    for other in (monochrome1, png):
        for name, p in monochrome2["probabilities"].items():
            assert other["probabilities"][name] == pytest.approx(p, abs=1e-3)


def test_format_is_sniffed_not_taken_from_the_file_name(client: httpx.Client) -> None:
    response = post_file(client, png_bytes(FILM), filename="film.dcm")
    assert response.status_code == 200
    assert strict_json(response)["image"]["source_format"] == "png"


def test_overlay_false_omits_the_overlay(client: httpx.Client, card: ModelCard) -> None:
    response = post_file(client, png_bytes(FILM), params={"overlay": "false"})
    assert response.status_code == 200
    body = strict_json(response)
    _check_prediction(body, card)
    assert body["gradcam"] is None


@pytest.mark.parametrize("kind", ["png8", "dicom"])
def test_film_true_adds_the_bare_film_under_the_overlay(client: httpx.Client, kind: str) -> None:
    data, _ = UPLOADS[kind]
    assert strict_json(post_file(client, data))["gradcam"]["film_png_base64"] is None  # not by default
    body = strict_json(post_file(client, data, params={"film": "true"}))
    overlay = np.asarray(_decode_overlay(body), dtype=np.int16)
    film = Image.open(io.BytesIO(base64.b64decode(body["gradcam"]["film_png_base64"], validate=True)))
    assert film.format == "PNG" and film.mode == "L"
    assert film.size == (body["gradcam"]["width"], body["gradcam"]["height"])
    plane = np.asarray(film, dtype=np.int16)
    # Exactly the background the heat map was blended onto...
    background = overlay_background(decode_image(data).pixels, TEST_OVERLAY_MAX_SIDE)
    assert np.array_equal(plane, np.rint(background * 255.0))
    # ...which is the uploaded film, shrunk: not a blank, not the model's input.
    shrunk = Image.fromarray(np.uint8(FILM * 255)).resize(film.size, Image.Resampling.BILINEAR)
    assert np.corrcoef(plane.ravel(), np.asarray(shrunk, dtype=np.float64).ravel())[0, 1] > 0.95
    assert overlay.shape[:2] == plane.shape


def test_small_film_overlay_keeps_its_size(client: httpx.Client) -> None:
    body = strict_json(post_file(client, png_bytes(chest_like(40, 30, seed=1))))
    assert _decode_overlay(body).size == (30, 40)


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_constant_images_give_finite_json(client: httpx.Client, card: ModelCard, value: float) -> None:
    flat = np.full((64, 64), value)
    for data in (png_bytes(flat), dicom_bytes(dicom_dataset(flat))):
        response = post_file(client, data)
        assert response.status_code == 200, response.text
        body = strict_json(response)  # raises on NaN/Infinity
        _check_prediction(body, card)
        _decode_overlay(body)


def test_threshold_is_reported(client: httpx.Client, card: ModelCard) -> None:
    body = strict_json(post_file(client, png_bytes(FILM)))
    expected = (
        card.decision_threshold.model_dump()
        if card.decision_threshold and len(card.class_names) == 2
        else None
    )
    assert body["threshold"] == expected


def test_concurrent_requests(client: httpx.Client) -> None:
    films = [png_bytes(chest_like(96, 80, seed=seed)) for seed in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda data: post_file(client, data), films))
    assert [r.status_code for r in responses] == [200] * len(films)
    assert len({r.headers["x-request-id"] for r in responses}) == len(films)


def test_models_endpoint_describes_the_loaded_model(client: httpx.Client, card: ModelCard) -> None:
    response = client.get("/v1/models")
    assert response.status_code == 200
    body = strict_json(response)
    assert body["name"] == card.name
    assert body["version"] == card.version
    assert body["class_names"] == card.class_names
    assert body["pixel_contract"] == card.pixel_contract.model_dump(mode="json")
    assert body["decision_threshold"] == (
        card.decision_threshold.model_dump() if card.decision_threshold else None
    )
    assert body["validation_metrics"] == card.validation_metrics
    assert body["majority_baseline"] == card.majority_baseline
    assert card.calibration is not None  # the tiny model is temperature-scaled like every trained one
    assert body["calibration"] == card.calibration.model_dump()
    assert body["onnx_sha256"] == card.onnx_sha256
    assert body["execution_provider"] == "CPUExecutionProvider"
    assert body["training_data"] == card.training_data.model_dump()


def test_health_and_readiness(client: httpx.Client, card: ModelCard) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["model"] == {"name": card.name, "version": card.version}


def test_openapi_documents_the_upload(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["required"] == ["file"]
