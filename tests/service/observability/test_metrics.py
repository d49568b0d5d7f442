"""/metrics on an app of its own: exact counts prove the registry is per-app, labels stay bounded."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.contract import ModelCard
from service.main import create_app
from service.observability.metrics import PREDICT_STAGES
from service.settings import Settings
from tests.factories import chest_like, dicom_bytes, dicom_dataset, png_bytes
from tests.service.live import AUTH_HEADERS, ThreadedServer, post_file


@pytest.fixture(scope="module")
def metrics_client(tiny_model_dir: Path, api_keys_file: Path) -> Iterator[httpx.Client]:
    app = create_app(
        Settings(model_dir=tiny_model_dir, execution_provider="cpu", api_keys_file=api_keys_file)
    )
    with ThreadedServer(app) as server, httpx.Client(base_url=server.url, headers=AUTH_HEADERS) as client:
        yield client


def _samples(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_requests_predictions_and_rejections(metrics_client: httpx.Client) -> None:
    for seed in range(2):
        assert post_file(metrics_client, png_bytes(chest_like(seed=seed))).status_code == 200
    assert post_file(metrics_client, dicom_bytes(dicom_dataset(chest_like()))).status_code == 200
    assert post_file(metrics_client, b"not an image").status_code == 415
    assert (
        post_file(metrics_client, dicom_bytes(dicom_dataset(chest_like(), modality="CT"))).status_code == 422
    )
    assert metrics_client.get("/patients/Zzyzx/12345").status_code == 404
    assert metrics_client.get("/healthz").status_code == 200

    samples = _samples(metrics_client)
    predict = {"route": "/v1/predict", "method": "POST"}
    assert _value(samples, "cxr_http_requests_total", **predict, status="200") == 3
    assert _value(samples, "cxr_http_requests_total", **predict, status="415") == 1
    assert _value(samples, "cxr_http_requests_total", **predict, status="422") == 1
    assert _value(samples, "cxr_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert _value(samples, "cxr_http_requests_total", route="/healthz", method="GET", status="200") == 1
    assert _value(samples, "cxr_http_request_duration_seconds_count", **predict, status="200") == 3
    assert _value(samples, "cxr_inference_duration_seconds_count") == 3
    predictions = sum(v for (name, _), v in samples.items() if name == "cxr_predictions_total")
    assert predictions == 3
    assert _value(samples, "cxr_rejected_inputs_total", reason="unsupported_format") == 1
    assert _value(samples, "cxr_rejected_inputs_total", reason="unsupported_modality") == 1
    # Raw paths never become label values.
    assert not any("Zzyzx" in value for _, labels in samples for _, value in labels)


def test_model_info_and_zero_class_counters(metrics_client: httpx.Client, card: ModelCard) -> None:
    samples = _samples(metrics_client)
    info = [labels for (name, labels) in samples if name == "cxr_model_info"]
    assert len(info) == 1
    assert dict(info[0])["execution_provider"] == "CPUExecutionProvider"
    class_names = {
        dict(labels)["class_name"] for (name, labels) in samples if name == "cxr_predictions_total"
    }
    assert class_names == set(card.class_names)


def test_each_prediction_times_its_stages(metrics_client: httpx.Client) -> None:
    """cxr_predict_stage_seconds: every stage of the path once per prediction; the overlay's only
    with an overlay (bench.load reads these to say where the time goes)."""
    before = _samples(metrics_client)
    assert post_file(metrics_client, png_bytes(chest_like(seed=5))).status_code == 200
    response = post_file(metrics_client, png_bytes(chest_like(seed=6)), params={"overlay": "false"})
    assert response.status_code == 200
    after = _samples(metrics_client)

    def delta(part: str, stage: str) -> float:
        name = f"cxr_predict_stage_seconds_{part}"
        return _value(after, name, stage=stage) - _value(before, name, stage=stage)

    common = ("upload", "admission_wait", "decode_wait", "decode", "batch_wait", "inference", "result_wait")
    for stage in (*common, "json"):
        assert delta("count", stage) == 2, stage
    for stage in ("overlay_wait", "colour_blend", "png_encode", "base64"):
        assert delta("count", stage) == 1, stage
    assert all(delta("sum", stage) >= 0 for stage in PREDICT_STAGES)
    assert delta("sum", "inference") > 0 and delta("sum", "decode") > 0
