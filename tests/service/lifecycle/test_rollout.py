"""The roll-out loop end to end: two replicas (``python -m service``) on one model store follow the
ACTIVE pointer, a version published with ``python -m training publish`` reaches both with no failed
request, and a bad version is refused by the CLI and, if the pointer is moved by hand, by both
replicas, which keep serving the previous one."""

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from bench.service_process import free_port
from service.store.active_version import read_active, write_active
from tests.service.live import AUTH_HEADERS, metric_value, post_file, run_python, service_env, service_process
from tests.service.model_edits import add_version, corrupt
from training.cli import EXIT_REFUSED

NAME = "cxr-pneumonia"
REPLICAS = 2
WATCH_S = "0.2"
_TIMEOUT_S = 60.0

Answer = tuple[int | str, str]  # (HTTP status or transport error, model version or "-")


class Clients:
    """One client thread per replica, each posting real films in a loop until stopped."""

    def __init__(self, urls: list[str], films: list[bytes]) -> None:
        self.films = films
        self.stop = threading.Event()
        self.answers: list[list[Answer]] = [[] for _ in urls]
        self.threads = [
            threading.Thread(target=self._post, args=(url, seen), daemon=True)
            for url, seen in zip(urls, self.answers, strict=True)
        ]

    def _post(self, url: str, seen: list[Answer]) -> None:
        with httpx.Client(base_url=url, timeout=30, headers=AUTH_HEADERS) as client:
            sent = 0
            while not self.stop.is_set():
                try:
                    response = post_file(
                        client, self.films[sent % len(self.films)], params={"overlay": "false"}
                    )
                except httpx.HTTPError as exc:
                    seen.append((type(exc).__name__, "-"))
                else:
                    ok = response.status_code == 200
                    seen.append((response.status_code, response.json()["model"]["version"] if ok else "-"))
                sent += 1

    def __enter__(self) -> "Clients":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def each_sends(self, more: int) -> None:
        """Until every client has had ``more`` further answers: traffic before, during and after."""
        targets = [len(seen) + more for seen in self.answers]
        deadline = time.monotonic() + _TIMEOUT_S
        while any(len(seen) < target for seen, target in zip(self.answers, targets, strict=True)):
            assert time.monotonic() < deadline, "the clients stopped getting answers"
            time.sleep(0.01)


@pytest.fixture
def replicas(store: Path, api_keys_file: Path, tmp_path: Path) -> Iterator[list[str]]:
    with ExitStack() as stack:
        urls = []
        for index in range(REPLICAS):
            env = service_env(
                model_store=str(store),
                model_version="active",
                model_watch_s=WATCH_S,
                execution_provider="cpu",
                api_keys_file=str(api_keys_file),
                port=str(free_port()),
                drain_seconds="0",
                intra_op_threads="1",
                decode_threads="1",
            )
            log = stack.enter_context((tmp_path / f"replica-{index}.log").open("wb"))
            urls.append(stack.enter_context(service_process(env, log)))
        yield urls


def _training_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_python("-m", "training", *args, env=service_env(), timeout=120)


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + _TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _versions(urls: list[str]) -> list[str]:
    return [httpx.get(f"{url}/v1/models", headers=AUTH_HEADERS).json()["version"] for url in urls]


def _refusals(urls: list[str]) -> list[float]:
    refused = []
    for url in urls:
        with httpx.Client(base_url=url, headers=AUTH_HEADERS) as client:
            refused.append(metric_value(client, "cxr_model_reloads_total", outcome="refused"))
    return refused


def test_a_published_version_rolls_out_to_every_replica_without_a_failed_request(
    store: Path, replicas: list[str], tiny_dataset: Path
) -> None:
    films = [path.read_bytes() for path in sorted(tiny_dataset.glob("*/*.png"))[::6]]
    common = ["--store", str(store), "--name", NAME]
    with Clients(replicas, films) as clients:
        clients.each_sends(3)
        assert _versions(replicas) == ["1", "1"]

        published = _training_cli("publish", *common, "--version", "2")
        assert published.returncode == 0, published.stderr
        assert "PUBLISHED: cxr-pneumonia 2 (ACTIVE -> 2)" in published.stdout
        _wait_until(lambda: _versions(replicas) == ["2", "2"], "a replica never served version 2")
        clients.each_sends(3)

        # A corrupted version: the CLI refuses to publish or activate it; the pointer stays.
        corrupt(add_version(store, store / NAME / "2", "3"))
        for command in ("publish", "activate"):
            refused = _training_cli(command, *common, "--version", "3")
            assert refused.returncode == EXIT_REFUSED, refused.stdout + refused.stderr
            assert "sha256" in refused.stderr
        assert read_active(store / NAME) == "2"
        # Moved by hand anyway: each replica verifies, refuses it once, and serves on.
        write_active(store / NAME, "3")
        _wait_until(lambda: _refusals(replicas) == [1.0, 1.0], "a replica never refused version 3")
        clients.each_sends(3)
        assert _versions(replicas) == ["2", "2"]

    for seen in clients.answers:
        failures = [answer for answer in seen if answer[0] != 200]
        assert not failures, failures
        versions = [version for _, version in seen]
        # Each client is sequential: once answered by version 2, never by 1 again, and never by 3.
        assert versions[0] == "1" and versions[-1] == "2"
        assert versions == sorted(versions) and "3" not in versions
    assert _refusals(replicas) == [1.0, 1.0]  # not once per poll
