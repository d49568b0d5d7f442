"""The audit line: one per request, from a real server handling DICOM uploads that carry a patient's
identity, with who/what/outcome filled in and nothing identifying - not even the raw UID or the key."""

import hashlib
import hmac
import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.contract import ModelCard
from service.main import create_app
from service.observability.logs import JsonFormatter
from service.settings import Settings
from tests.factories import (
    FAKE_BIRTH_DATE,
    FAKE_PATIENT_ID,
    FAKE_PATIENT_NAME,
    FAKE_PHI_FRAGMENTS,
    chest_like,
    dicom_bytes,
    dicom_dataset,
    png_bytes,
)
from tests.service.live import AUTH_HEADERS, ThreadedServer, post_file, write_api_keys
from tests.service.raw_http import wait_until

FILM = chest_like(96, 80, seed=41)
PACS_KEY = "pacs-audit-secret-0123456789"
PROM_KEY = "prom-audit-secret-0123456789"
HASH_KEY = b"audit-hash-key-for-the-tests-0123456789"
PHI_FILENAME = f"{FAKE_PATIENT_NAME}_{FAKE_PATIENT_ID}_{FAKE_BIRTH_DATE}.dcm"


@contextmanager
def _captured(logger_name: str, level: int) -> Iterator[io.StringIO]:
    """JSON lines of ``logger_name`` and below, formatted as the service formats them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    target = logging.getLogger(logger_name)
    previous = target.level
    target.addHandler(handler)
    target.setLevel(level)
    try:
        yield stream
    finally:
        target.setLevel(previous)
        target.removeHandler(handler)


def _uid_hmac(uid: str) -> str:
    return "hmac-sha256:" + hmac.new(HASH_KEY, uid.encode(), hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def audited(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, io.StringIO]]:
    """(server URL, every JSON log line the process writes while the module's tests run)."""
    secrets = tmp_path_factory.mktemp("audit-secrets")
    keys = write_api_keys(secrets / "api_keys", f"pacs-router:{PACS_KEY}", f"prometheus:{PROM_KEY}:metrics")
    (secrets / "uid_key").write_bytes(HASH_KEY + b"\n")
    settings = Settings(
        model_dir=tiny_model_dir,
        execution_provider="cpu",
        api_keys_file=keys,
        audit_hash_key_file=secrets / "uid_key",
    )
    # All of the service's own logging at debug level: still no PHI. (Third-party loggers are
    # silenced by the production logging setup; test_phi checks that whole process's output.)
    with _captured("service", logging.DEBUG) as stream, ThreadedServer(create_app(settings)) as server:
        yield server.url, stream


def _audit_line(stream: io.StringIO, response: httpx.Response) -> dict[str, Any]:
    """The audit line of ``response``'s request, once written (it follows the response's last byte)."""
    request_id = response.headers["x-request-id"]

    def lines() -> list[dict[str, Any]]:
        events = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
        return [e for e in events if e["logger"] == "service.audit" and e.get("request_id") == request_id]

    wait_until(lambda: len(lines()) > 0, "the audit line")
    (line,) = lines()
    return line


def _post(url: str, key: str | None, data: bytes) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    headers |= {"X-Request-ID": FAKE_PATIENT_ID, "X-Patient": FAKE_PATIENT_NAME}
    with httpx.Client(base_url=url, headers=headers, timeout=30.0) as client:
        return client.post("/v1/predict", files={"file": (PHI_FILENAME, data, "application/dicom")})


def test_a_dicom_prediction_is_audited_with_who_what_and_a_uid_hash(
    audited: tuple[str, io.StringIO], card: ModelCard
) -> None:
    url, stream = audited
    ds = dicom_dataset(FILM)
    data = dicom_bytes(ds)
    response = _post(url, PACS_KEY, data)
    assert response.status_code == 200, response.text
    line = _audit_line(stream, response)
    assert line["msg"] == "request" and line["level"] == "info"
    assert {k: line[k] for k in line if k not in ("ts", "duration_ms", "request_id")} == {
        "level": "info",
        "logger": "service.audit",
        "msg": "request",
        "method": "POST",
        "route": "/v1/predict",
        "status": 200,
        "code": None,
        "key_id": "pacs-router",
        "model_name": card.name,
        "model_version": card.version,
        "input_format": "dicom",
        "input_bytes": len(data),
        "sop_instance_uid_hash": _uid_hmac(str(ds.SOPInstanceUID)),
    }
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0.0


@pytest.mark.parametrize(
    ("key", "data", "status", "code", "key_id", "input_format"),
    [
        (
            PACS_KEY,
            dicom_bytes(dicom_dataset(FILM, modality="CT")),
            422,
            "unsupported_modality",
            "pacs-router",
            "dicom",
        ),
        (PACS_KEY, png_bytes(FILM), 200, None, "pacs-router", "png"),
        (PACS_KEY, b"%PDF-1.7 not a film", 415, "unsupported_format", "pacs-router", None),
        (None, dicom_bytes(dicom_dataset(FILM)), 401, "missing_api_key", None, None),
        ("not-the-key-0123456789", dicom_bytes(dicom_dataset(FILM)), 401, "invalid_api_key", None, None),
        (PROM_KEY, dicom_bytes(dicom_dataset(FILM)), 403, "forbidden", "prometheus", None),
    ],
    ids=["refused-ct", "png", "not-an-image", "no-key", "wrong-key", "wrong-scope"],
)
def test_every_outcome_is_audited(
    audited: tuple[str, io.StringIO],
    *,
    key: str | None,
    data: bytes,
    status: int,
    code: str | None,
    key_id: str | None,
    input_format: str | None,
) -> None:
    url, stream = audited
    response = _post(url, key, data)
    assert response.status_code == status, response.text
    line = _audit_line(stream, response)
    assert (line["status"], line["code"], line["key_id"]) == (status, code, key_id)
    assert line["route"] == "/v1/predict"  # refused before routing, still named
    assert line["input_format"] == input_format
    assert line["sop_instance_uid_hash"] is None  # only a decoded film's UID is hashed
    # A refused caller's upload is never read, so nothing about it is recorded.
    assert line["input_bytes"] == (len(data) if status not in (401, 403) else None)


def test_no_identity_raw_uid_or_key_material_in_any_log_line(audited: tuple[str, io.StringIO]) -> None:
    url, stream = audited
    ds = dicom_dataset(FILM)
    for key in (PACS_KEY, "not-the-key-0123456789", PROM_KEY):
        _post(url, key, dicom_bytes(ds))
    response = _post(url, PACS_KEY, dicom_bytes(ds))
    _audit_line(stream, response)  # everything up to here is written
    logs = stream.getvalue()
    uids = [str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)]
    forbidden = [
        *FAKE_PHI_FRAGMENTS,
        PHI_FILENAME,
        *uids,
        PACS_KEY,
        PROM_KEY,
        "not-the-key",
        HASH_KEY.decode(),
    ]
    assert not [s for s in forbidden if s.lower() in logs.lower()]
    assert _uid_hmac(str(ds.SOPInstanceUID)) in logs  # the hash is there, computable by the key holder


def test_without_a_hash_key_the_uid_is_plain_sha256(tiny_model_dir: Path, api_keys_file: Path) -> None:
    ds = dicom_dataset(FILM)
    app = create_app(
        Settings(model_dir=tiny_model_dir, execution_provider="cpu", api_keys_file=api_keys_file)
    )
    with (
        _captured("service.audit", logging.INFO) as stream,
        ThreadedServer(app) as server,
        httpx.Client(base_url=server.url, headers=AUTH_HEADERS) as client,
    ):
        response = post_file(client, dicom_bytes(ds))
        line = _audit_line(stream, response)
    expected = "sha256:" + hashlib.sha256(str(ds.SOPInstanceUID).encode()).hexdigest()
    assert (line["key_id"], line["sop_instance_uid_hash"]) == ("tests", expected)
