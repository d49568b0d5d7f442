"""Faults that are not the caller's: an inference that fails inside ONNX Runtime, a missing GPU.

The failing inference is real: the tiny model with a guard spliced in front of it (see
``model_edits.add_failure_guard``) raises from ``session.run`` for bright films only.
"""

import io
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.service_process import free_port
from service.errors import INFERENCE_FAILED_BODY
from service.inference.providers import CPU, CUDA, provider_fallback
from service.main import create_app
from service.observability.logs import JsonFormatter
from service.settings import Settings
from tests.factories import FAKE_PHI_FRAGMENTS, chest_like, dicom_bytes, dicom_dataset, png_bytes
from tests.service.live import AUTH_HEADERS, ThreadedServer, post_file, run_python, service_env
from tests.service.model_edits import add_failure_guard

pytest.importorskip("onnx")

no_cuda = pytest.mark.skipif(CUDA in ort.get_available_providers(), reason="this machine has CUDA")


def _bright_plane() -> npt.NDArray[np.float64]:
    """Nearly white, with a dark corner so the percentile stretch keeps it bright: mean input ~0.97."""
    plane = np.ones((64, 64))
    plane[:4, :32] = 0.0
    return plane


def _bright_film() -> bytes:
    return png_bytes(_bright_plane())


def _metric(client: httpx.Client, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"{name}{labels} not exported")


@pytest.fixture(scope="module")
def guarded_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import shutil

    model_dir = Path(shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("guarded") / "model"))
    add_failure_guard(model_dir)
    return model_dir


@contextmanager
def _serving(settings: Settings) -> Iterator[httpx.Client]:
    with (
        ThreadedServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url, timeout=30.0, headers=AUTH_HEADERS) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def guarded_client(guarded_model: Path, api_keys_file: Path) -> Iterator[httpx.Client]:
    with _serving(
        Settings(model_dir=guarded_model, execution_provider="cpu", api_keys_file=api_keys_file)
    ) as c:
        yield c


@contextmanager
def _json_log(logger_name: str) -> Iterator[io.StringIO]:
    """The service's JSON log lines for one logger, formatted when emitted (request id included)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def test_an_inference_error_fails_that_request_only(guarded_client: httpx.Client) -> None:
    good = png_bytes(chest_like(seed=3))
    assert post_file(guarded_client, good).status_code == 200
    before = _metric(guarded_client, "cxr_inference_errors_total", kind="runtime")

    # The second bright film is a DICOM carrying a fake patient, so the log is checked for PHI too.
    with _json_log("service.api.error_handlers") as log:
        failed = [
            post_file(guarded_client, _bright_film()),
            post_file(guarded_client, dicom_bytes(dicom_dataset(_bright_plane()))),
        ]
    for response in failed:
        assert response.status_code == 500
        assert response.json() == INFERENCE_FAILED_BODY  # generic: nothing about tensors or the film

    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    assert [line["msg"] for line in lines] == ["inference failed"] * 2
    assert [line["request_id"] for line in lines] == [r.headers["X-Request-ID"] for r in failed]
    for line in lines:
        assert line["level"] == "error" and line["kind"] == "runtime"
        assert line["exception"][0]["type"] == "service.inference.runtime.InferenceError"
        text = json.dumps(line)
        assert "reshape" not in text.lower()  # ORT's message (shapes, node) is not logged
        assert not any(fragment in text for fragment in FAKE_PHI_FRAGMENTS)

    assert _metric(guarded_client, "cxr_inference_errors_total", kind="runtime") == before + 2
    assert guarded_client.get("/readyz").status_code == 200
    assert post_file(guarded_client, good).status_code == 200


def test_concurrent_good_films_are_unaffected_by_failing_neighbours(guarded_client: httpx.Client) -> None:
    films = [(png_bytes(chest_like(seed=seed)), 200) for seed in range(8)]
    films += [(_bright_film(), 500)] * 8
    films = films[::2] + films[1::2]  # interleave good and bad

    def send(film: bytes) -> int:
        return post_file(guarded_client, film, params={"overlay": "false"}).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(send, [film for film, _ in films]))
    assert statuses == [expected for _, expected in films]


@no_cuda
def test_auto_provider_fallback_is_reported_not_silent(tiny_model_dir: Path, api_keys_file: Path) -> None:
    settings = Settings(model_dir=tiny_model_dir, execution_provider="auto", api_keys_file=api_keys_file)
    with _serving(settings) as client:
        ready = client.get("/readyz").json()
        assert ready["execution_provider"] == CPU
        assert ready["provider_fallback"]["requested"] == "auto"
        assert CUDA in ready["provider_fallback"]["reason"]
        assert client.get("/v1/models").json()["provider_fallback"] == ready["provider_fallback"]
        assert _metric(client, "cxr_execution_provider_fallback") == 1.0


def test_cpu_by_choice_is_no_fallback(tiny_model_dir: Path, api_keys_file: Path) -> None:
    settings = Settings(model_dir=tiny_model_dir, execution_provider="cpu", api_keys_file=api_keys_file)
    with _serving(settings) as client:
        assert client.get("/readyz").json()["provider_fallback"] is None
        assert _metric(client, "cxr_execution_provider_fallback") == 0.0


def test_a_fallback_always_has_a_reason() -> None:
    """Including the case this CPU-only machine cannot produce: CUDA installed but unusable."""
    assert provider_fallback("cpu", [CUDA, CPU], CPU) is None
    assert provider_fallback("auto", [CUDA, CPU], CUDA) is None
    assert provider_fallback("cuda", [CUDA, CPU], CUDA) is None
    no_build = provider_fallback("auto", [CPU], CPU)
    assert no_build is not None and f"has no {CUDA}" in no_build
    unusable = provider_fallback("auto", [CUDA, CPU], CPU)
    assert unusable is not None and "could not be used" in unusable


@no_cuda
def test_cuda_required_without_cuda_never_becomes_ready(tiny_model_dir: Path, api_keys_file: Path) -> None:
    result = run_python(
        "-m",
        "service",
        env=service_env(
            model_dir=str(tiny_model_dir),
            execution_provider="cuda",
            api_keys_file=str(api_keys_file),
            port=str(free_port()),
        ),
    )
    assert result.returncode == 3, result.stderr
    critical = [json.loads(line) for line in result.stderr.splitlines() if '"level": "critical"' in line]
    assert critical and "CXR_EXECUTION_PROVIDER=cuda" in critical[0]["msg"], result.stderr
    assert '"msg": "ready"' not in result.stderr
