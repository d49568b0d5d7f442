"""Fixtures for the PACS gateway tests: the service's settings on the tiny model, and a real Orthanc."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.orthanc import Orthanc
from service.settings import Settings
from tests.service.live import TEST_MAX_UPLOAD_BYTES, TEST_OVERLAY_MAX_SIDE
from tests.service.pacs.harness import SERVICE_AE, require_pacs_tools


@pytest.fixture(scope="session")
def service_settings(tiny_model_dir: Path, api_keys_file: Path) -> Settings:
    return Settings(
        model_dir=tiny_model_dir,
        api_keys_file=api_keys_file,
        max_upload_bytes=TEST_MAX_UPLOAD_BYTES,
        overlay_max_side=TEST_OVERLAY_MAX_SIDE,
        execution_provider="cpu",
    )


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    """A fresh, empty PACS per test; it accepts stores from the gateway (any port: results come from
    the SCU's ephemeral port) and from the test's modality."""
    require_pacs_tools()
    pacs = Orthanc(tmp_path / "orthanc", modalities={"cxr": (SERVICE_AE, 104), "modality": ("MODALITY", 104)})
    pacs.start()
    try:
        yield pacs
    finally:
        pacs.stop()
