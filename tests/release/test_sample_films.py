"""The sample films of ``samples/`` through a real HTTP server on the released model: each gets the
class ``samples/samples.json`` expects, and the non-chest image is refused."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.main import create_app
from service.settings import Settings
from tests.service.live import AUTH_HEADERS, TEST_API_KEY, TEST_KEY_ID, ThreadedServer, write_api_keys
from training.release.released import released_version

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = REPO_ROOT / "samples"
STORE = REPO_ROOT / "models"
MANIFEST: list[dict[str, str]] = json.loads((SAMPLES / "samples.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def released_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    keys = write_api_keys(
        tmp_path_factory.mktemp("keys") / "api_keys", f"{TEST_KEY_ID}:{TEST_API_KEY}:predict"
    )
    version = released_version(STORE / "cxr-pneumonia")
    assert version is not None
    # Found as the demo finds it: store, name and the version RELEASED names.
    settings = Settings(
        model_store=STORE,
        model_name="cxr-pneumonia",
        model_version=version,
        api_keys_file=keys,
        execution_provider="cpu",
    )
    with ThreadedServer(create_app(settings)) as server:
        yield server


def _post(server: ThreadedServer, name: str) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=180.0, headers=AUTH_HEADERS) as client:
        return client.post("/v1/predict", files={"file": (name, (SAMPLES / name).read_bytes())})


def test_the_sample_folder_is_small_and_complete() -> None:
    listed = {row["file"] for row in MANIFEST}
    present = {p.name for p in SAMPLES.iterdir()} - {"README.md", "samples.json"}
    assert listed == present
    assert sum(p.stat().st_size for p in SAMPLES.iterdir()) < 4_000_000
    formats = " ".join(row["format"] for row in MANIFEST)
    for wanted in ("CR", "DX", "MONOCHROME1", "JPEG 2000", "PNG"):
        assert wanted in formats
    assert {row["expected"] for row in MANIFEST} == {"NORMAL", "PNEUMONIA", "refused", "accepted"}
    assert {row["population"] for row in MANIFEST if row["expected"] != "refused"} == {"pediatric", "adult"}


@pytest.mark.parametrize(
    "sample", [r for r in MANIFEST if r["expected"] in ("NORMAL", "PNEUMONIA")], ids=lambda r: r["file"]
)
def test_a_chest_film_gets_its_expected_class_with_triage_and_overlay(
    released_server: ThreadedServer, sample: dict[str, str]
) -> None:
    response = _post(released_server, sample["file"])
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["predicted_class"] == sample["expected"]
    assert body["triage"]["level"] == ("urgent" if sample["expected"] == "PNEUMONIA" else "routine")
    assert body["gradcam"]["png_base64"]
    assert body["image"]["source_format"] == ("dicom" if sample["file"].endswith(".dcm") else "png")


@pytest.mark.parametrize(
    "sample", [r for r in MANIFEST if r["expected"] == "accepted"], ids=lambda r: r["file"]
)
def test_a_real_adult_film_without_a_diagnosis_passes_every_check(
    released_server: ThreadedServer, sample: dict[str, str]
) -> None:
    """NEMA's real CR chest film: read (JPEG 2000, MONOCHROME1, 15 bits), accepted by the gate, answered
    with an overlay; its class is not asserted, as no diagnosis is recorded for it."""
    response = _post(released_server, sample["file"])
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["predicted_class"] in ("NORMAL", "PNEUMONIA")
    assert body["image"]["source_format"] == "dicom"
    assert body["gradcam"]["png_base64"]


@pytest.mark.parametrize(
    "sample", [r for r in MANIFEST if r["expected"] == "refused"], ids=lambda r: r["file"]
)
def test_a_non_chest_image_is_refused(released_server: ThreadedServer, sample: dict[str, str]) -> None:
    response = _post(released_server, sample["file"])
    assert response.status_code == 422, response.text
    assert response.json()["code"] == sample.get("refusal_code", "out_of_distribution")
