"""Real HTTP servers for the service tests: uvicorn in a thread, or ``python -m service`` as a process.

Both listen on loopback; the thread variant binds port 0 and reads back the port the OS chose.
"""

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
import uvicorn
from fastapi import FastAPI

from bench.service_process import wait_ready
from service.main import create_app
from service.server import uvicorn_config
from service.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
# The shared live server's limits: small enough that the over-limit tests send little data, large
# enough for every test film; the overlay cap is below the test films' size so resizing is exercised.
TEST_MAX_UPLOAD_BYTES = 256 * 1024
TEST_OVERLAY_MAX_SIDE = 64
# Test servers run with authentication on, as in production: the ``api_keys_file`` fixture holds
# this key with every scope, and test clients send it.
TEST_KEY_ID = "tests"
TEST_API_KEY = "tests-all-scopes-9c4e7a1b5d3f"
AUTH_HEADERS = {"Authorization": f"Bearer {TEST_API_KEY}"}
_START_TIMEOUT_S = 60.0


class ThreadedServer:
    """``with ThreadedServer(app) as server: httpx.get(server.url + "/healthz")``."""

    def __init__(self, app: FastAPI) -> None:
        # The service's own server configuration (h11, header limits, JSON protocol errors).
        config = uvicorn_config(app, host="127.0.0.1", port=0)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="uvicorn-test", daemon=True)
        self.url = ""

    def _run(self) -> None:
        # uvicorn exits when the lifespan (model load) fails; start() reports it.
        with contextlib.suppress(SystemExit):
            self.server.run()

    def start(self) -> "ThreadedServer":
        self.thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start (see the log for the reason)")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> "ThreadedServer":
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def write_api_keys(path: Path, *lines: str) -> Path:
    """A key file as an operator would mount it: one ``<key_id>:<secret>[:<scopes>]`` per line."""
    path.write_text("# cxr-triage API keys\n" + "".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def service_env(**cxr: str) -> dict[str, str]:
    """The current environment minus any CXR_* variable, plus ``cxr`` as CXR_<KEY>=value."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CXR_")}
    env.update({f"CXR_{key.upper()}": value for key, value in cxr.items()})
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def live_client(model_dir: Path, keys: Path, **settings: object) -> Iterator[httpx.Client]:
    """A real server on loopback for ``model_dir`` (CPU) and a client that sends the test key; for
    module fixtures that ``yield from`` it with the settings under test."""
    app = create_app(
        Settings(model_dir=model_dir, execution_provider="cpu", api_keys_file=keys, **settings)  # type: ignore[arg-type]
    )
    with (
        ThreadedServer(app) as server,
        httpx.Client(base_url=server.url, timeout=30.0, headers=AUTH_HEADERS) as client,
    ):
        yield client


def run_python(*args: str, env: Mapping[str, str], timeout: float = 60) -> "subprocess.CompletedProcess[str]":
    """``python ARGS`` in the repository, to its end (e.g. ``-m service`` refusing to start)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def service_process(env: Mapping[str, str], log: IO[bytes]) -> Iterator[str]:
    """Run ``python -m service`` until the block ends; yields its base URL once /readyz is 200."""
    url = f"http://127.0.0.1:{env['CXR_PORT']}"
    process = subprocess.Popen(
        [sys.executable, "-m", "service"], cwd=REPO_ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_ready(process, url, timeout_s=_START_TIMEOUT_S)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def post_file(
    client: httpx.Client,
    data: bytes,
    *,
    filename: str = "upload.bin",
    params: Mapping[str, str] | None = None,
) -> httpx.Response:
    """POST ``data`` as the multipart ``file`` field (the name says nothing about the format)."""
    return client.post(
        "/v1/predict", files={"file": (filename, data, "application/octet-stream")}, params=params
    )


def metric_value(client: httpx.Client, name: str, **labels: str) -> float:
    """One sample from ``GET /metrics`` (0.0 when absent); ``client`` must be allowed to scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def _refuse_constant(name: str) -> object:
    raise ValueError(f"non-standard JSON constant {name} in a response")


def strict_json(response: httpx.Response) -> dict[str, Any]:
    """The body as JSON, refusing NaN/Infinity (which ``response.json()`` would silently accept)."""
    import json

    body = json.loads(response.text, parse_constant=_refuse_constant)
    assert isinstance(body, dict)
    return body
