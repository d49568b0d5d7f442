"""STOW-RS intake (``POST /dicomweb/studies``) of a multi-instance study, results STOW-RS'd to Orthanc."""

import uuid
from pathlib import Path

import httpx
import pytest

from bench.orthanc import Orthanc
from service.settings import Settings
from tests.factories import dicom_bytes
from tests.service.pacs.harness import (
    SC_CLASS,
    SR_CLASS,
    all_done,
    film,
    gateway_server,
    pacs_settings,
    studies,
    wait_for,
)


def related(parts: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/related body of (content type, bytes) parts, and its Content-Type header."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        b"--" + boundary.encode() + b"\r\nContent-Type: " + kind.encode() + b"\r\n\r\n" + data + b"\r\n"
        for kind, data in parts
    )
    body += b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def test_stow_rs_intake_of_a_study_delivered_by_stow_rs(
    tmp_path: Path, service_settings: Settings, orthanc: Orthanc
) -> None:
    pacs = pacs_settings(tmp_path / "spool", dicom_port=None, pacs_stow_url=orthanc.dicomweb)
    first = film(seed=1)
    study = str(first.StudyInstanceUID)
    films = [first, film(study, seed=2), film(study, seed=3)]
    body, content_type = related([("application/dicom", dicom_bytes(ds)) for ds in films])
    with gateway_server(service_settings, pacs) as (_, client):
        response = client.post("/dicomweb/studies", content=body, headers={"Content-Type": content_type})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/dicom+json")
        stored = response.json()["00081199"]["Value"]
        assert {item["00081155"]["Value"][0] for item in stored} == {ds.SOPInstanceUID for ds in films}
        assert "00081198" not in response.json()  # no failed instance
        jobs = wait_for("three films triaged and delivered", lambda: all_done(client, 3))
        assert {job["delivery_state"] for job in jobs} == {"delivered"}
        (summary,) = studies(client)["studies"]
        assert summary["study_instance_uid"] == study and len(summary["instances"]) == 3
        assert summary["delivery_state"] == "delivered" and summary["finished_at"] is not None

    held = orthanc.study_instances(study)
    assert sorted(instance["SOPClassUID"] for instance in held) == sorted([SR_CLASS] * 3 + [SC_CLASS] * 3)
    assert {instance["SOPInstanceUID"] for instance in held} == {
        uid for job in jobs for uid in (job["sr_instance_uid"], job["sc_instance_uid"])
    }
    assert len(orthanc.qido_instances(study)) == 6


def test_stow_rs_partial_failure_and_refusals(tmp_path: Path, service_settings: Settings) -> None:
    pacs = pacs_settings(tmp_path / "spool", dicom_port=None)
    good = film(seed=4)
    ct = film(seed=5, SOPClassUID="1.2.840.10008.5.1.4.1.1.2")
    ct.file_meta.MediaStorageSOPClassUID = ct.SOPClassUID
    body, content_type = related(
        [
            ("application/dicom", dicom_bytes(good)),
            ("application/dicom", dicom_bytes(ct)),
            ("application/dicom", b"not dicom at all"),
            ("image/png", b"\x89PNG"),
        ]
    )
    with gateway_server(service_settings, pacs) as (server, client):
        response = client.post("/dicomweb/studies", content=body, headers={"Content-Type": content_type})
        assert response.status_code == 202, response.text
        failed = response.json()["00081198"]["Value"]
        reasons = sorted(item["00081197"]["Value"][0] for item in failed)
        assert reasons == [0x0122, 0xC000, 0xC000]  # CT: SOP class not supported; the rest: not understood
        # Nothing usable at all: 409; a wrong media type: 415; no key: 401.
        body, content_type = related([("application/dicom", b"garbage")])
        assert (
            client.post("/dicomweb/studies", content=body, headers={"Content-Type": content_type}).status_code
            == 409
        )
        wrong = client.post("/dicomweb/studies", content=b"x", headers={"Content-Type": "application/dicom"})
        assert wrong.status_code == 415 and wrong.json()["code"] == "unsupported_media_type"
        anonymous = httpx.post(
            f"{server.url}/dicomweb/studies", content=body, headers={"Content-Type": content_type}
        )
        assert anonymous.status_code == 401
        # The same instance twice is one job.
        body, content_type = related([("application/dicom", dicom_bytes(good))])
        assert (
            client.post("/dicomweb/studies", content=body, headers={"Content-Type": content_type}).status_code
            == 200
        )
        (job,) = wait_for("the good film triaged", lambda: all_done(client, 1))
        assert job["sop_instance_uid"] == good.SOPInstanceUID and job["delivery_state"] == "none"


@pytest.mark.parametrize("limit_field", ["pacs_stow_max_bytes"])
def test_stow_rs_body_over_the_limit_is_413(
    tmp_path: Path, service_settings: Settings, limit_field: str
) -> None:
    pacs = pacs_settings(tmp_path / "spool", dicom_port=None, **{limit_field: 1000})
    body, content_type = related([("application/dicom", dicom_bytes(film(seed=6)))])
    with gateway_server(service_settings, pacs) as (_, client):
        response = client.post("/dicomweb/studies", content=body, headers={"Content-Type": content_type})
        assert response.status_code == 413 and response.json()["code"] == "upload_too_large"
