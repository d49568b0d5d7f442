"""No protected health information in logs or responses, even when the upload is broken.

The server runs as ``python -m service`` (the production logging setup) at debug level, with
stdout and stderr captured to a file; every upload carries the fake patient's name, ID and birth
date - in the DICOM header, in PNG/JPEG metadata, in the file name and in request headers.
"""

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from pydicom.uid import RLELossless

from bench.service_process import free_port
from service.main import create_app
from service.observability.logs import JsonFormatter
from service.settings import Settings
from tests.factories import (
    FAKE_BIRTH_DATE,
    FAKE_PATIENT_ID,
    FAKE_PATIENT_NAME,
    chest_like,
    dicom_bytes,
    dicom_dataset,
)
from tests.service.live import AUTH_HEADERS, TEST_API_KEY, ThreadedServer, service_env, service_process

FILM = chest_like(96, 80, seed=11)
PHI_FILENAME = f"{FAKE_PATIENT_NAME.replace('^', '_')}_{FAKE_PATIENT_ID}_{FAKE_BIRTH_DATE}.dcm"
STUDY_DATE = "20240102"  # dicom_dataset's StudyDate: a date, so PHI too
FORBIDDEN = [
    FAKE_PATIENT_NAME,
    *FAKE_PATIENT_NAME.split("^"),
    FAKE_PATIENT_ID,
    FAKE_BIRTH_DATE,
    STUDY_DATE,
]
# The ID's bare digit groups ("7731", "4456") must not show up as a number of their own either. As a
# plain substring they also turn up by chance inside random UIDs, request ids and probabilities, so
# they are matched only where no letter or digit touches them.
ID_DIGIT_GROUPS = [
    re.compile(rf"(?<![0-9A-Za-z]){part}(?![0-9A-Za-z])")
    for part in FAKE_PATIENT_ID.split("-")
    if part.isdigit()
]


def _leaks(text: str, extra: tuple[str, ...] = ()) -> list[str]:
    lowered = text.lower()
    found = [s for s in [*FORBIDDEN, *extra] if s.lower() in lowered]
    return found + [pattern.pattern for pattern in ID_DIGIT_GROUPS if pattern.search(text)]


def _png_with_text() -> bytes:
    info = PngInfo()
    info.add_text("PatientName", FAKE_PATIENT_NAME)
    info.add_text("PatientID", FAKE_PATIENT_ID)
    buffer = io.BytesIO()
    Image.fromarray((FILM * 255).astype("uint8")).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _jpeg_with_comment_and_exif() -> bytes:
    buffer = io.BytesIO()
    comment = f"{FAKE_PATIENT_NAME} {FAKE_PATIENT_ID} {FAKE_BIRTH_DATE}".encode()
    image = Image.fromarray((FILM * 255).astype("uint8"))
    exif = image.getexif()
    exif[0x010E] = f"{FAKE_PATIENT_NAME} {FAKE_PATIENT_ID}"  # ImageDescription
    exif[0x013B] = FAKE_PATIENT_NAME  # Artist
    exif[0x0112] = 1  # Orientation: makes the decoder read the EXIF block
    image.save(buffer, format="JPEG", comment=comment, exif=exif)
    return buffer.getvalue()


def _corrupt_rle_dicom() -> bytes:
    data = bytearray(dicom_bytes(dicom_dataset(FILM), transfer_syntax=RLELossless))
    data[-600:-100] = b"\x7f" * 500  # valid header, garbage RLE segments: pydicom's decoder errors
    return bytes(data)


def _uploads() -> dict[str, bytes]:
    valid = dicom_bytes(dicom_dataset(FILM))
    png = _png_with_text()
    return {
        "dicom": valid,
        "dicom-monochrome1-rle": dicom_bytes(
            dicom_dataset(FILM, photometric="MONOCHROME1"), transfer_syntax=RLELossless
        ),
        "ct": dicom_bytes(dicom_dataset(FILM, modality="CT")),
        "truncated-dicom": valid[: len(valid) - 3000],
        "header-only-dicom": valid[:400],
        "corrupt-rle-dicom": _corrupt_rle_dicom(),
        "png-with-text": png,
        "truncated-png-with-text": png[: len(png) // 2],
        "jpeg-with-comment-and-exif": _jpeg_with_comment_and_exif(),
    }


@pytest.fixture(scope="module")
def phi_run(
    tiny_model_dir: Path, api_keys_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[str]]]:
    """(captured log text, response bodies) after every upload went through a real server process."""
    log_path = tmp_path_factory.mktemp("phi") / "service.log"
    env = service_env(
        model_dir=str(tiny_model_dir),
        port=str(free_port()),
        log_level="debug",
        api_keys_file=str(api_keys_file),
    )
    bodies: list[str] = []
    with log_path.open("wb") as log, service_process(env, log) as url, httpx.Client(base_url=url) as client:
        headers = {"X-Request-ID": FAKE_PATIENT_ID, "X-Patient": FAKE_PATIENT_NAME, **AUTH_HEADERS}
        for name, data in _uploads().items():
            response = client.post(
                "/v1/predict",
                params={"patient": FAKE_PATIENT_NAME},
                files={"file": (PHI_FILENAME, data, "application/dicom")},
                headers=headers,
            )
            assert response.status_code < 500, (name, response.text)
            bodies.append(response.text)
        bodies.append(client.get(f"/v1/patients/{FAKE_PATIENT_ID}", headers=AUTH_HEADERS).text)
        bodies.append(client.get("/v1/models", headers=AUTH_HEADERS).text)
    yield log_path.read_text(encoding="utf-8", errors="replace"), bodies


def test_no_phi_in_logs(phi_run: tuple[str, list[str]]) -> None:
    logs, _ = phi_run
    # The capture worked and the server logged what it should: predictions and rejections.
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    messages = [event["msg"] for event in events]
    assert messages.count("prediction") == 4, logs
    assert messages.count("input rejected") == 5, logs
    assert "Application startup complete." in messages
    leaked = _leaks(logs, (PHI_FILENAME, TEST_API_KEY))
    assert not leaked, f"PHI or key material found in the logs: {leaked}"


def test_no_dicom_uids_in_logs(phi_run: tuple[str, list[str]]) -> None:
    logs, bodies = phi_run
    echoed = [json.loads(body)["dicom"] for body in bodies if '"dicom":{' in body]
    uids = [
        dicom[key] for dicom in echoed for key in ("study_instance_uid", "sop_instance_uid") if dicom[key]
    ]
    assert uids
    assert not [uid for uid in uids if uid in logs]


def test_log_lines_are_json(phi_run: tuple[str, list[str]]) -> None:
    # Native decoders may write to stderr themselves (a Rust panic message, say); ours is JSON.
    logs, _ = phi_run
    for line in logs.splitlines():
        if line.startswith("{"):
            assert isinstance(json.loads(line), dict), line


def test_no_phi_in_responses(phi_run: tuple[str, list[str]]) -> None:
    _, bodies = phi_run
    leaked = _leaks("\n".join(bodies), (PHI_FILENAME,))
    assert not leaked, f"PHI found in responses: {leaked}"


def test_unexpected_exception_is_a_500_logged_without_its_message(
    tiny_model_dir: Path, api_keys_file: Path
) -> None:
    app = create_app(
        Settings(model_dir=tiny_model_dir, execution_provider="cpu", api_keys_file=api_keys_file)
    )

    async def explode() -> None:
        raise RuntimeError(f"could not process film of {FAKE_PATIENT_NAME}")

    app.add_api_route("/v1/explode", explode)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with ThreadedServer(app) as server:
            response = httpx.get(f"{server.url}/v1/explode", headers=AUTH_HEADERS)
            assert httpx.get(f"{server.url}/healthz").status_code == 200
    finally:
        root.removeHandler(handler)
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert FAKE_PATIENT_NAME not in response.text
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    errors = [event for event in events if event["msg"] == "unhandled exception"]
    assert len(errors) == 1
    assert errors[0]["request_id"] == response.headers["x-request-id"]
    assert errors[0]["exception"][0]["type"] == "builtins.RuntimeError"
    assert any("in explode" in frame for frame in errors[0]["exception"][0]["frames"])
    assert "Zzyzx" not in stream.getvalue()
