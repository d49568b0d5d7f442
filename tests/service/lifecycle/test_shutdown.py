"""SIGTERM under load: readiness drops at once, every request still gets its answer, exit status 0.

This is the Kubernetes story: the kubelet sends SIGTERM while endpoints are being removed, so for a
while requests keep arriving. The load generator here behaves like a load balancer that honours
readiness: it stops sending new requests once it sees /readyz answer 503, and not before.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from bench.service_process import free_port
from tests.factories import chest_like, png_bytes
from tests.service.live import AUTH_HEADERS, REPO_ROOT, post_file, service_env

DRAIN_SECONDS = 4.0
CLIENTS = 4
FILMS = [png_bytes(chest_like(seed=seed)) for seed in range(4)]


def _wait_ready(process: "subprocess.Popen[bytes]", url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, f"python -m service exited with {process.returncode}"
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "python -m service did not become ready"
        time.sleep(0.1)


class LoadGenerator:
    """Keep-alive clients posting films until the readiness watcher sees 503."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.not_ready = threading.Event()
        self.results: list[list[tuple[float, int | str]]] = [[] for _ in range(CLIENTS)]
        self.readiness: list[tuple[int, str]] = []
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(CLIENTS)]
        self.threads.append(threading.Thread(target=self._watch_readiness))

    def _client(self, index: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30, headers=AUTH_HEADERS) as client:
            sent = 0
            while not self.not_ready.is_set():
                started = time.monotonic()
                try:
                    outcome: int | str = post_file(client, FILMS[sent % len(FILMS)]).status_code
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                self.results[index].append((started, outcome))
                sent += 1

    def _watch_readiness(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while True:
                try:
                    response = client.get("/readyz")
                except httpx.TransportError as exc:  # gone without ever saying it was draining
                    self.readiness.append((0, type(exc).__name__))
                    break
                if response.status_code != 200:
                    self.readiness.append((response.status_code, response.json()["code"]))
                    break
                time.sleep(0.02)
        self.not_ready.set()

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def wait_for(self, requests_each: int) -> None:
        deadline = time.monotonic() + 30
        while any(len(results) < requests_each for results in self.results):
            assert time.monotonic() < deadline, "the service is not answering"
            time.sleep(0.01)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=60)


def test_sigterm_drains_with_no_failed_request(
    tiny_model_dir: Path, api_keys_file: Path, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = service_env(
        model_dir=str(tiny_model_dir),
        port=str(port),
        drain_seconds=str(DRAIN_SECONDS),
        execution_provider="cpu",
        api_keys_file=str(api_keys_file),
    )
    log_path = tmp_path / "service.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait_ready(process, url)
            load = LoadGenerator(url)
            load.start()
            load.wait_for(requests_each=3)
            sigterm_at = time.monotonic()
            os.kill(process.pid, signal.SIGTERM)
            load.join()

            # Newly arriving requests, on a fresh connection, are still served while draining,
            # and liveness holds (a failing /healthz would make Kubernetes restart the pod).
            with httpx.Client(base_url=url, timeout=30, headers=AUTH_HEADERS) as late:
                assert post_file(late, FILMS[0]).status_code == 200
                assert late.get("/healthz").status_code == 200
                assert late.get("/readyz").status_code == 503
            returncode = process.wait(timeout=DRAIN_SECONDS + 30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    outcomes = [outcome for results in load.results for _, outcome in results]
    assert outcomes and all(outcome == 200 for outcome in outcomes), outcomes
    assert load.readiness == [(503, "draining")]
    assert returncode == 0, log_path.read_text()
    messages = [json.loads(line)["msg"] for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert "SIGTERM: draining; /readyz answers 503" in messages
    assert messages.index("SIGTERM: draining; /readyz answers 503") < messages.index("Shutting down")
    # In-flight at the signal, or sent after it but before readiness was seen to drop: all answered.
    assert any(started < sigterm_at for results in load.results for started, _ in results)
