"""Fixtures for the service tests: a live server on the tiny model, shared by the whole session."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.contract import ModelCard
from service.contract.model_card import CARD_FILENAME
from service.main import create_app
from service.settings import Settings
from service.store.active_version import write_active
from tests.service.live import (
    AUTH_HEADERS,
    TEST_API_KEY,
    TEST_KEY_ID,
    TEST_MAX_UPLOAD_BYTES,
    TEST_OVERLAY_MAX_SIDE,
    ThreadedServer,
    write_api_keys,
)
from tests.service.model_edits import add_version


@pytest.fixture(scope="session")
def card(tiny_model_dir: Path) -> ModelCard:
    return ModelCard.model_validate_json((tiny_model_dir / CARD_FILENAME).read_bytes())


@pytest.fixture(scope="session")
def api_keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The key file every test server reads: the test key, with every scope."""
    path = tmp_path_factory.mktemp("secrets") / "api_keys"
    return write_api_keys(path, f"{TEST_KEY_ID}:{TEST_API_KEY}:predict,metrics,admin")


@pytest.fixture(scope="session")
def live_settings(tiny_model_dir: Path, api_keys_file: Path) -> Settings:
    return Settings(
        model_dir=tiny_model_dir,
        api_keys_file=api_keys_file,
        max_upload_bytes=TEST_MAX_UPLOAD_BYTES,
        overlay_max_side=TEST_OVERLAY_MAX_SIDE,
        execution_provider="cpu",
    )


@pytest.fixture(scope="session")
def live_server(live_settings: Settings) -> Iterator[ThreadedServer]:
    with ThreadedServer(create_app(live_settings)) as server:
        yield server


@pytest.fixture(scope="session")
def client(live_server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30.0, headers=AUTH_HEADERS) as http:
        yield http


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the model directory that a test may tamper with."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


@pytest.fixture
def store(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A model store holding versions 1 and 2 of the tiny model (equally good), ACTIVE naming 1."""
    store = tmp_path / "store"
    for version in ("1", "2"):
        add_version(store, tiny_model_dir, version)
    write_active(store / "cxr-pneumonia", "1")
    return store
