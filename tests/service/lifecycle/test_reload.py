"""Hot reload through ``POST /v1/admin/reload`` on a live server: verified like start-up, swapped
only on success, and never a failed request because of it."""

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.contract.model_card import ONNX_FILENAME
from service.main import create_app
from service.settings import Settings
from tests.factories import chest_like, png_bytes
from tests.service.live import (
    AUTH_HEADERS,
    TEST_API_KEY,
    TEST_KEY_ID,
    ThreadedServer,
    post_file,
    write_api_keys,
)
from tests.service.model_edits import add_version, corrupt, drop_output, move_weights_to_external_data

pytest.importorskip("onnx")

FILM = png_bytes(chest_like(seed=5))


@dataclass
class Deployment:
    store: Path
    client: httpx.Client

    def version_dir(self, version: str) -> Path:
        return self.store / "cxr-pneumonia" / version

    def reload(self, version: str | None = None) -> httpx.Response:
        return self.client.post("/v1/admin/reload", json=None if version is None else {"version": version})

    def served_version(self) -> str:
        response = post_file(self.client, FILM, params={"overlay": "false"})
        assert response.status_code == 200, response.text
        version = response.json()["model"]["version"]
        assert self.client.get("/v1/models").json()["version"] == version
        return str(version)

    def metric(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        text = self.client.get("/metrics").text
        return {
            tuple(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        }


READER_KEY = "reader-predict-only-5e8d2c"


@pytest.fixture
def deployment(tiny_model_dir: Path, tmp_path: Path) -> Iterator[Deployment]:
    """A store holding versions 1 and 2 of the tiny model, served at version 1."""
    store = tmp_path / "store"
    for version in ("1", "2"):
        add_version(store, tiny_model_dir, version)
    keys = write_api_keys(
        tmp_path / "api_keys", f"{TEST_KEY_ID}:{TEST_API_KEY}:predict,metrics,admin", f"reader:{READER_KEY}"
    )
    settings = Settings(
        model_store=store,
        model_version="1",
        execution_provider="cpu",
        api_keys_file=keys,
        # The in-flight test holds an upload open across a reload: no idle or rate cut-off meanwhile.
        upload_idle_timeout_s=60.0,
        upload_min_rate_bps=0.0,
    )
    with (
        ThreadedServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url, timeout=30, headers=AUTH_HEADERS) as client,
    ):
        yield Deployment(store, client)


def test_a_good_reload_switches_responses_models_and_metrics(deployment: Deployment) -> None:
    assert deployment.served_version() == "1"
    response = deployment.reload("2")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["model"]["version"], body["previous"]["version"]) == ("reloaded", "2", "1")
    assert deployment.served_version() == "2"
    info = deployment.metric("cxr_model_info")
    assert [dict(labels)["version"] for labels in info] == ["2"]  # the old series is gone
    reloads = deployment.metric("cxr_model_reloads_total")
    assert (reloads[(("outcome", "succeeded"),)], reloads[(("outcome", "refused"),)]) == (1.0, 0.0)


BREAKAGES: dict[str, tuple[Callable[[Path], None], int, str, str]] = {
    "corrupted": (corrupt, 422, "model_rejected", "sha256"),
    "external-data": (move_weights_to_external_data, 422, "model_rejected", "outside the file"),
    "missing-output": (lambda d: drop_output(d, "cam"), 422, "model_rejected", "missing ['cam']"),
    "no-model-file": (lambda d: (d / ONNX_FILENAME).unlink(), 422, "model_rejected", "not found"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES), ids=list(BREAKAGES))
def test_a_bad_version_is_refused_and_the_old_model_keeps_serving(
    deployment: Deployment, breakage: str
) -> None:
    edit, status, code, message = BREAKAGES[breakage]
    edit(deployment.version_dir("2"))
    response = deployment.reload("2")
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert message in body["detail"] and "Still serving cxr-pneumonia 1" in body["detail"]
    assert deployment.served_version() == "1"
    assert deployment.client.get("/readyz").json()["model"]["version"] == "1"
    info = deployment.metric("cxr_model_info")
    assert [dict(labels)["version"] for labels in info] == ["1"]
    assert deployment.metric("cxr_model_reloads_total")[(("outcome", "refused"),)] == 1.0


@pytest.mark.parametrize(
    ("version", "status", "code"),
    [("7", 404, "model_not_found"), ("../1", 422, "invalid_request"), ("", 422, "invalid_request")],
)
def test_unknown_or_unsafe_versions_are_refused(
    deployment: Deployment, version: str, status: int, code: str
) -> None:
    response = deployment.reload(version)
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert deployment.served_version() == "1"


def test_a_model_corrupted_on_disk_keeps_serving_from_memory_and_cannot_be_reloaded(
    deployment: Deployment,
) -> None:
    corrupt(deployment.version_dir("1"))  # the file behind the running session
    assert deployment.served_version() == "1"
    response = deployment.reload()  # the configured version, read and verified again
    assert (response.status_code, response.json()["code"]) == (422, "model_rejected")
    assert "sha256" in response.json()["detail"]
    assert deployment.served_version() == "1"


def test_requests_never_fail_during_good_and_failed_reloads(deployment: Deployment) -> None:
    corrupt(deployment.version_dir("2"))
    add_version(deployment.store, deployment.version_dir("1"), "3")
    stop = threading.Event()
    results: list[list[tuple[int, str]]] = [[] for _ in range(3)]

    def keep_predicting(seen: list[tuple[int, str]]) -> None:
        with httpx.Client(
            base_url=str(deployment.client.base_url), timeout=30, headers=AUTH_HEADERS
        ) as client:
            while not stop.is_set():
                response = post_file(client, FILM, params={"overlay": "false"})
                version = response.json()["model"]["version"] if response.status_code == 200 else "-"
                seen.append((response.status_code, version))

    def each_client_sends(more: int) -> None:
        """Until every client has had ``more`` further answers: load before, between and after."""
        targets = [len(seen) + more for seen in results]
        deadline = time.monotonic() + 30
        while any(len(seen) < target for seen, target in zip(results, targets, strict=True)):
            assert time.monotonic() < deadline, "the clients stopped getting answers"
            time.sleep(0.005)

    with ThreadPoolExecutor(max_workers=3) as pool:
        workers = [pool.submit(keep_predicting, seen) for seen in results]
        each_client_sends(2)
        assert deployment.reload("2").status_code == 422
        each_client_sends(2)
        assert deployment.reload("3").status_code == 200
        each_client_sends(2)
        stop.set()
        for worker in workers:
            worker.result()
    for seen in results:
        assert all(status == 200 for status, _ in seen), seen
        versions = [version for _, version in seen]
        # Each client is sequential: once it has been answered by version 3, never by 1 again.
        assert versions[0] == "1" and versions[-1] == "3"
        assert versions == sorted(versions)


def test_an_in_flight_request_finishes_on_the_model_it_started_with(deployment: Deployment) -> None:
    """The upload stalls half-way while version 2 is swapped in; it is still answered by version 1."""
    boundary = "reload-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    half = len(FILM) // 2
    resume = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield head + FILM[:half]
        resume.wait(timeout=30)
        yield FILM[half:] + tail

    def stalled_request() -> httpx.Response:
        with httpx.Client(
            base_url=str(deployment.client.base_url), timeout=60, headers=AUTH_HEADERS
        ) as client:
            return client.post(
                "/v1/predict",
                params={"overlay": "false"},
                content=slow_body(),
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            )

    with ThreadPoolExecutor(max_workers=1) as pool:
        in_flight = pool.submit(stalled_request)
        # The reload below must not race the stalled request's start: wait until the server has it.
        _wait_for_in_flight(deployment)
        assert deployment.reload("2").status_code == 200
        assert deployment.served_version() == "2"
        resume.set()
        response = in_flight.result()
    assert response.status_code == 200, response.text
    assert response.json()["model"]["version"] == "1"


def _wait_for_in_flight(deployment: Deployment) -> None:
    """Until the stalled request is reading its upload (it holds no slot while it does): its model
    was resolved when the route started."""
    deadline = time.monotonic() + 30
    while deployment.metric("cxr_upload_bytes_in_flight").get((), 0.0) < 1:
        assert time.monotonic() < deadline, "the stalled request never reached the route"
        time.sleep(0.01)


def test_reload_needs_the_admin_scope(deployment: Deployment) -> None:
    reader = {"Authorization": f"Bearer {READER_KEY}"}
    response = deployment.client.post("/v1/admin/reload", json={"version": "2"}, headers=reader)
    assert (response.status_code, response.json()["code"]) == (403, "forbidden")
    anonymous = httpx.post(str(deployment.client.base_url.join("/v1/admin/reload")), json={"version": "2"})
    assert anonymous.status_code == 401
    assert deployment.served_version() == "1"


def test_choosing_a_version_with_a_pinned_model_dir_is_a_conflict(
    tiny_model_dir: Path, api_keys_file: Path
) -> None:
    settings = Settings(model_dir=tiny_model_dir, execution_provider="cpu", api_keys_file=api_keys_file)
    with (
        ThreadedServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url, headers=AUTH_HEADERS) as client,
    ):
        response = client.post("/v1/admin/reload", json={"version": "2"})
        assert (response.status_code, response.json()["code"]) == (409, "version_not_selectable")
        again = client.post("/v1/admin/reload")  # re-verifying the pinned directory is fine
        assert again.status_code == 200, again.text
        assert again.json()["model"] == again.json()["previous"]
