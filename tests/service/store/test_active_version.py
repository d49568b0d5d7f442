"""The store's ACTIVE pointer: written atomically, read strictly, followed by CXR_MODEL_VERSION=active
at start-up, on an admin reload and, with CXR_MODEL_WATCH_S, by polling."""

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from service.inference.runtime import ModelRuntime
from service.lifecycle.state import context_of
from service.main import create_app
from service.settings import Settings
from service.store.active_version import (
    ACTIVE_FILENAME,
    NoPointerError,
    PointerError,
    read_active,
    write_active,
)
from service.store.errors import ModelLoadError, ModelNotFoundError
from tests.factories import chest_like, png_bytes
from tests.service.live import AUTH_HEADERS, ThreadedServer, metric_value, post_file
from tests.service.model_edits import add_version, corrupt

NAME = "cxr-pneumonia"
FILM = png_bytes(chest_like(seed=11))
WATCH_S = 0.2


def _settings(store: Path, api_keys_file: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "model_store": store,
        "model_version": "active",
        "execution_provider": "cpu",
        "api_keys_file": api_keys_file,
    }
    return Settings(**(values | overrides))


# --- the pointer file -------------------------------------------------------------------------


def test_the_pointer_is_one_line_replaced_atomically(store: Path) -> None:
    name_dir = store / NAME
    path = write_active(name_dir, "2")
    assert path == name_dir / ACTIVE_FILENAME
    assert path.read_bytes() == b"2\n"
    assert read_active(name_dir) == "2"
    assert path.stat().st_mode & 0o777 == 0o644  # readable by a service running as another user
    # The temporary file was renamed into place: nothing is left beside it.
    assert sorted(p.name for p in name_dir.iterdir()) == ["1", "2", ACTIVE_FILENAME]


def test_a_pointer_without_its_newline_is_accepted(store: Path) -> None:
    (store / NAME / ACTIVE_FILENAME).write_text("2")
    assert read_active(store / NAME) == "2"


def test_a_missing_pointer_says_nothing_was_published(tmp_path: Path) -> None:
    with pytest.raises(NoPointerError, match="does not exist: no version has been published yet"):
        read_active(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "holds '', which is not one version folder name"),
        (b"\n", "holds '', which is not one version folder name"),
        (b"1\n2\n", "which is not one version folder name"),
        (b" 1\n", "which is not one version folder name"),
        (b"1\r\n", "which is not one version folder name"),
        (b"../1\n", "which is not one version folder name"),
        (b"latest\n", "holds 'latest'"),
        (b"active\n", "holds 'active'"),
        ("vé\n".encode(), "is not ASCII text"),
        (b"9" * 300, "is longer than a version name"),
    ],
    ids=["empty", "blank", "two-lines", "space", "crlf", "parent", "latest", "active", "utf8", "long"],
)
def test_a_garbled_pointer_is_refused_with_what_it_holds(
    tmp_path: Path, content: bytes, message: str
) -> None:
    (tmp_path / ACTIVE_FILENAME).write_bytes(content)
    with pytest.raises(PointerError, match=message) as caught:
        read_active(tmp_path)
    assert not isinstance(caught.value, NoPointerError)
    assert "python -m training activate" in str(caught.value) or "ASCII" in message or "longer" in message


@pytest.mark.parametrize(
    ("version", "message"),
    [("latest", "not a version folder name"), ("../1", "not a version folder name"), ("7", "no model_card")],
)
def test_the_pointer_only_names_version_folders(store: Path, version: str, message: str) -> None:
    with pytest.raises(PointerError, match=message):
        write_active(store / NAME, version)
    assert read_active(store / NAME) == "1"


# --- start-up ---------------------------------------------------------------------------------


def test_active_loads_the_version_the_pointer_names(store: Path, api_keys_file: Path) -> None:
    write_active(store / NAME, "2")
    runtime = ModelRuntime.load(_settings(store, api_keys_file))
    assert (runtime.card.version, runtime.model_dir) == ("2", store / NAME / "2")


def test_latest_stays_the_default_and_ignores_the_pointer(store: Path, api_keys_file: Path) -> None:
    settings = Settings(model_store=store, execution_provider="cpu", api_keys_file=api_keys_file)
    assert settings.model_version == "latest" and settings.model_watch_s == 0
    assert ModelRuntime.load(settings).card.version == "2"  # ACTIVE says 1


BAD_POINTERS: dict[str, tuple[Callable[[Path], object], type[ModelLoadError], str]] = {
    "missing": (lambda d: (d / ACTIVE_FILENAME).unlink(), ModelNotFoundError, "does not exist: no version"),
    "garbled": (
        lambda d: (d / ACTIVE_FILENAME).write_text("1\n2\n"),
        ModelLoadError,
        "not one version folder",
    ),
    "dangling": (lambda d: (d / ACTIVE_FILENAME).write_text("7\n"), ModelNotFoundError, "names version '7'"),
}


@pytest.mark.parametrize("case", list(BAD_POINTERS))
def test_a_bad_pointer_stops_start_up_with_a_clear_message(
    store: Path, api_keys_file: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    edit, error, message = BAD_POINTERS[case]
    edit(store / NAME)
    with pytest.raises(error, match=message) as caught:
        ModelRuntime.load(_settings(store, api_keys_file))
    assert str(caught.value).startswith("CXR_MODEL_VERSION=active")
    app = create_app(_settings(store, api_keys_file))
    with (
        caplog.at_level(logging.CRITICAL, logger="service.main"),
        pytest.raises(RuntimeError, match="did not start"),
    ):
        ThreadedServer(app).start()
    assert any("refusing to start" in r.getMessage() and message in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "overrides",
    [{"model_version": "1"}, {"model_dir": Path("/models/x/1")}, {"model_watch_s": 0.01}],
    ids=["pinned-version", "pinned-dir", "too-often"],
)
def test_watching_needs_something_to_watch(
    store: Path, api_keys_file: Path, overrides: dict[str, object]
) -> None:
    with pytest.raises(ValidationError, match="CXR_MODEL_WATCH_S"):
        _settings(store, api_keys_file, **({"model_watch_s": 1.0} | overrides))


# --- a running service ------------------------------------------------------------------------


@pytest.fixture
def serve(store: Path, api_keys_file: Path) -> Iterator[Callable[..., httpx.Client]]:
    """Start a server on ``store`` with the given settings; stopped when the test ends."""
    servers: list[ThreadedServer] = []
    clients: list[httpx.Client] = []

    def start(**overrides: object) -> httpx.Client:
        server = ThreadedServer(create_app(_settings(store, api_keys_file, **overrides))).start()
        servers.append(server)
        clients.append(httpx.Client(base_url=server.url, timeout=30, headers=AUTH_HEADERS))
        return clients[-1]

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.stop()


def _served(client: httpx.Client) -> str:
    response = post_file(client, FILM, params={"overlay": "false"})
    assert response.status_code == 200, response.text
    return str(response.json()["model"]["version"])


def _wait_for_version(client: httpx.Client, version: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while client.get("/v1/models").json()["version"] != version:
        assert time.monotonic() < deadline, f"still not serving version {version}"
        time.sleep(0.05)


def test_a_reload_without_a_body_re_reads_the_pointer(
    store: Path, serve: Callable[..., httpx.Client]
) -> None:
    client = serve()
    assert _served(client) == "1"
    write_active(store / NAME, "2")
    assert _served(client) == "1"  # nothing watches: the pointer is read when asked to
    response = client.post("/v1/admin/reload")
    assert response.status_code == 200, response.text
    assert (response.json()["previous"]["version"], response.json()["model"]["version"]) == ("1", "2")
    assert _served(client) == "2"


def test_a_reload_without_a_body_refuses_a_bad_pointer(
    store: Path, serve: Callable[..., httpx.Client]
) -> None:
    client = serve()
    (store / NAME / ACTIVE_FILENAME).write_text("7\n")
    response = client.post("/v1/admin/reload")
    assert (response.status_code, response.json()["code"]) == (404, "model_not_found")
    assert "names version '7'" in response.json()["detail"]
    (store / NAME / ACTIVE_FILENAME).write_text("not one\n")
    response = client.post("/v1/admin/reload")
    assert (response.status_code, response.json()["code"]) == (422, "model_rejected")
    assert _served(client) == "1"


def test_the_watcher_follows_the_pointer_and_refuses_bad_versions_once(
    store: Path, serve: Callable[..., httpx.Client], caplog: pytest.LogCaptureFixture
) -> None:
    client = serve(model_watch_s=WATCH_S)
    assert _served(client) == "1"
    write_active(store / NAME, "2")
    _wait_for_version(client, "2")
    assert _served(client) == "2"
    assert metric_value(client, "cxr_model_reloads_total", outcome="succeeded") == 1.0

    corrupt(add_version(store, store / NAME / "2", "3"))
    with caplog.at_level(logging.WARNING, logger="service.lifecycle.reload"):
        write_active(store / NAME, "3")  # what a hand-edited pointer could do: publish would refuse 3
        _wait_for_refusals(client, 1)
        time.sleep(8 * WATCH_S)  # several more polls see the same pointer
    assert metric_value(client, "cxr_model_reloads_total", outcome="refused") == 1.0
    refusals = [r.getMessage() for r in caplog.records if "model reload refused" in r.getMessage()]
    assert len(refusals) == 1 and "sha256" in refusals[0]
    assert _served(client) == "2"

    (store / NAME / ACTIVE_FILENAME).write_text("garbled pointer\n")  # a second, different fault
    _wait_for_refusals(client, 2)
    assert _served(client) == "2"
    write_active(store / NAME, "1")  # roll back: a change again, so acted on
    _wait_for_version(client, "1")
    assert metric_value(client, "cxr_model_reloads_total", outcome="succeeded") == 2.0
    assert metric_value(client, "cxr_model_reloads_total", outcome="refused") == 2.0


def test_the_watcher_follows_latest_too(store: Path, serve: Callable[..., httpx.Client]) -> None:
    client = serve(model_version="latest", model_watch_s=WATCH_S)
    assert _served(client) == "2"
    add_version(store, store / NAME / "2", "3")
    _wait_for_version(client, "3")


def test_the_watcher_stops_when_the_service_drains(
    store: Path, api_keys_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(_settings(store, api_keys_file, model_watch_s=WATCH_S))
    with (
        caplog.at_level(logging.INFO, logger="service.lifecycle.store_watch"),
        ThreadedServer(app) as server,
        httpx.Client(base_url=server.url, timeout=30, headers=AUTH_HEADERS) as client,
    ):
        context_of(app).draining = True  # what SIGTERM does first
        deadline = time.monotonic() + 10
        while not any(r.getMessage() == "store watch stopped" for r in caplog.records):
            assert time.monotonic() < deadline, "the watcher did not stop"
            time.sleep(0.05)
        write_active(store / NAME, "2")
        time.sleep(4 * WATCH_S)
        assert _served(client) == "1"  # draining: no reload behind the load balancer's back


def _wait_for_refusals(client: httpx.Client, count: float) -> None:
    deadline = time.monotonic() + 30
    while metric_value(client, "cxr_model_reloads_total", outcome="refused") < count:
        assert time.monotonic() < deadline, "the watcher never refused the bad version"
        time.sleep(0.05)


def test_a_failed_pointer_write_leaves_no_temporary_file(store: Path) -> None:
    name_dir = store / NAME
    (name_dir / ACTIVE_FILENAME).unlink()
    (name_dir / ACTIVE_FILENAME).mkdir()  # the rename onto it fails, as a full or read-only disk would
    with pytest.raises(OSError):
        write_active(name_dir, "2")
    assert sorted(p.name for p in name_dir.iterdir()) == ["1", "2", ACTIVE_FILENAME]
    with pytest.raises(PointerError, match="cannot be read"):
        read_active(name_dir)
