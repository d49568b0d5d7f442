"""A triaged film's results fetched back by UID (``/v1/studies/{study}/instances/{sop}/...``): the
overlay and the bare film as PNG, the SR and SC as DICOM, the same objects the PACS received; and
every way a UID can fail - not a UID, unknown, not triaged yet, dead-lettered, deleted by retention."""

import io
import logging
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image

from bench.orthanc import Orthanc
from service.errors import ServiceError
from service.pacs.jobs import JobTable, NewJob
from service.pacs.results import require_results, result_state
from service.settings import Settings
from tests.factories import FAKE_PHI_FRAGMENTS
from tests.service.pacs.harness import (
    MODALITY_AE,
    SC_CLASS,
    SR_CLASS,
    all_done,
    delivering_to,
    film,
    gateway_server,
    pacs_settings,
    storescu,
    wait_for,
    write_films,
)

BAD_UIDS = ("1.02.3", "1..2", "abc", "1.2.", "1" * 65, "1.2.3 ", "%2E1")


def _orthanc_file(pacs: Orthanc, sop_instance_uid: str) -> pydicom.Dataset:
    """The instance as the PACS stored it (its REST API: look the UID up, fetch the file)."""
    found = httpx.post(f"{pacs.url}/tools/lookup", content=sop_instance_uid, timeout=30.0).json()
    (orthanc_id,) = [item["ID"] for item in found if item["Type"] == "Instance"]
    data = httpx.get(f"{pacs.url}/instances/{orthanc_id}/file", timeout=30.0).content
    return pydicom.dcmread(io.BytesIO(data))


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["code"] == code, body
    return str(body["detail"])


def test_results_of_a_film_from_a_modality_match_what_the_pacs_holds(
    tmp_path: Path, service_settings: Settings, orthanc: Orthanc, caplog: pytest.LogCaptureFixture
) -> None:
    pacs = delivering_to(orthanc, tmp_path / "spool")
    assert pacs.dicom_port is not None
    source = film(seed=7)
    (path,) = write_films(tmp_path / "films", [source])
    study, sop = str(source.StudyInstanceUID), str(source.SOPInstanceUID)
    base = f"/v1/studies/{study}/instances/{sop}"
    caplog.set_level(logging.DEBUG)
    with gateway_server(service_settings, pacs) as (server, client):
        assert storescu(pacs.dicom_port, [path], calling=MODALITY_AE).returncode == 0
        (job,) = wait_for("the film triaged and delivered", lambda: all_done(client, 1))
        assert job["delivery_state"] == "delivered" and job["result_state"] == "available", job
        assert job["results_expire_at"] is not None  # delivered: retention counts from now

        instance = client.get(base)
        assert instance.status_code == 200, instance.text
        assert instance.json() == job

        sc = client.get(f"{base}/sc.dcm")
        sr = client.get(f"{base}/sr.dcm")
        for response in (sc, sr):
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "application/dicom"
            assert response.headers["cache-control"] == "no-store"
        sc_ds, sr_ds = (pydicom.dcmread(io.BytesIO(r.content)) for r in (sc, sr))
        assert (sc_ds.SOPClassUID, sc_ds.SOPInstanceUID) == (SC_CLASS, job["sc_instance_uid"])
        assert (sr_ds.SOPClassUID, sr_ds.SOPInstanceUID) == (SR_CLASS, job["sr_instance_uid"])
        # The very objects the PACS was sent: same instance, same pixels, same content.
        filed_sc, filed_sr = (
            _orthanc_file(orthanc, job["sc_instance_uid"]),
            _orthanc_file(orthanc, job["sr_instance_uid"]),
        )
        assert filed_sc.PixelData == sc_ds.PixelData and filed_sc.StudyInstanceUID == study
        assert filed_sr.ContentSequence == sr_ds.ContentSequence

        overlay = client.get(f"{base}/overlay.png")
        assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(overlay.content)) as image:
            assert image.mode == "RGB"
            rgb = np.asarray(image)
        assert rgb.shape == (sc_ds.Rows, sc_ds.Columns, 3)
        assert rgb.tobytes() == sc_ds.PixelData  # the SC's pixels, losslessly

        bare = client.get(f"{base}/film.png")
        assert bare.status_code == 200 and bare.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(bare.content)) as image:
            assert image.mode == "L" and image.size == (sc_ds.Columns, sc_ds.Rows)

        # Not a UID (PS3.5 9.1), in either place: 422 naming the parameter, never echoing the value.
        for bad in BAD_UIDS:
            for path_ in (
                f"/v1/studies/{bad}/instances/{sop}/sc.dcm",
                f"/v1/studies/{study}/instances/{bad}",
            ):
                response = client.get(path_)
                if response.status_code == 404:  # "%2E1" and a trailing space never reach the route
                    continue
                detail = _error(response, 422, "invalid_uid")
                assert bad.strip() not in detail and "PS3.5" in detail
        # A UID this gateway never received, or a film asked for under another study: 404 naming it.
        unknown = "1.2.826.0.1.3680043.8.498.1"
        detail = _error(
            client.get(f"/v1/studies/{study}/instances/{unknown}/overlay.png"), 404, "instance_not_found"
        )
        assert unknown in detail and study in detail
        _error(client.get(f"/v1/studies/{unknown}/instances/{sop}/sr.dcm"), 404, "instance_not_found")
        _error(client.get(f"/v1/studies/{unknown}/instances/{sop}"), 404, "instance_not_found")
        # The same API key and scope as the worklist.
        with httpx.Client(base_url=server.url, timeout=30.0) as anonymous:
            _error(anonymous.get(f"{base}/overlay.png"), 401, "missing_api_key")

    # Fetching results logs the film by hash only: no UID, no patient value.
    forbidden = [*FAKE_PHI_FRAGMENTS, sop, study, job["sc_instance_uid"], job["sr_instance_uid"]]
    routes = {getattr(r, "route", None) for r in caplog.records}
    assert "/v1/studies/{study_instance_uid}/instances/{sop_instance_uid}/overlay.png" in routes
    for record in caplog.records:
        if record.name.startswith(("httpx", "httpcore")):  # this test's own client, not the service
            continue
        text = f"{record.getMessage()} {record.__dict__}"
        assert not [value for value in forbidden if value in text], (record.name, record.msg)


def test_dead_letters_and_retention_answer_409_and_410(tmp_path: Path, service_settings: Settings) -> None:
    # No destination and no retention: results are deleted at the first sweep after triage.
    pacs = pacs_settings(tmp_path / "spool", pacs_retention_s=0.0)
    assert pacs.dicom_port is not None
    good, lateral = film(seed=71), film(seed=72, ViewPosition="LL")
    paths = write_films(tmp_path / "films", [good, lateral])
    with gateway_server(service_settings, pacs) as (_, client):
        assert storescu(pacs.dicom_port, paths, calling=MODALITY_AE).returncode == 0
        wait_for("both films finished", lambda: all_done(client, 2))

        def purged() -> dict[str, object] | None:
            job = client.get(f"/v1/studies/{good.StudyInstanceUID}/instances/{good.SOPInstanceUID}").json()
            return job if job["result_state"] == "expired" else None

        job = wait_for("the results deleted by retention", purged)
        assert job["results_expire_at"] is None and job["triage_level"] in ("urgent", "routine")
        for kind in ("overlay.png", "film.png", "sc.dcm", "sr.dcm"):
            url = f"/v1/studies/{good.StudyInstanceUID}/instances/{good.SOPInstanceUID}/{kind}"
            detail = _error(client.get(url), 410, "result_expired")
            assert str(job["sr_instance_uid"]) in detail and str(job["sc_instance_uid"]) in detail
        dead_url = f"/v1/studies/{lateral.StudyInstanceUID}/instances/{lateral.SOPInstanceUID}"
        dead = client.get(dead_url).json()
        assert dead["state"] == "dead" and dead["result_state"] == "none"
        detail = _error(client.get(f"{dead_url}/overlay.png"), 409, "no_result")
        assert "unsupported_view" in detail


def test_a_film_not_triaged_yet_is_409_with_retry_after(tmp_path: Path) -> None:
    jobs = JobTable(tmp_path / "jobs.sqlite3")
    try:
        jobs.record(NewJob("1.2.3.4", "1.2.3", "1.2.3.1", "1.2.840.10008.5.1.4.1.1.1.1", "dimse", "in-a.dcm"))
        job = jobs.get("1.2.3.4")
        assert job is not None and result_state(job) == "pending"
        with pytest.raises(ServiceError) as raised:
            require_results(job, retry_after_s=0.2)
        assert (raised.value.status, raised.value.code) == (409, "result_pending")
        assert raised.value.headers == {"Retry-After": "1"}
    finally:
        jobs.close()
