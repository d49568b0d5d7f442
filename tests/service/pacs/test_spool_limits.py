"""A full spool answers "out of resources" instead of dropping films; spooled PHI is deleted after the
retention; logs hold no patient data and no instance UIDs."""

import logging
from pathlib import Path

import pytest
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian
from pynetdicom import AE

from service.pacs.gateway import SPOOL_FOLDER
from service.settings import Settings
from tests.factories import FAKE_PHI_FRAGMENTS
from tests.service.live import metric_value
from tests.service.pacs.harness import (
    MODALITY_AE,
    SERVICE_AE,
    all_done,
    film,
    gateway_server,
    pacs_settings,
    storescu,
    wait_for,
    write_films,
)


def test_full_spool_answers_out_of_resources(tmp_path: Path, service_settings: Settings) -> None:
    pacs = pacs_settings(tmp_path / "spool", pacs_spool_max_bytes=2000)  # less than one 8 KB film
    assert pacs.dicom_port is not None
    with gateway_server(service_settings, pacs) as (_, client):
        modality = AE(ae_title=MODALITY_AE)
        modality.add_requested_context(DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian)
        assoc = modality.associate("127.0.0.1", pacs.dicom_port, ae_title=SERVICE_AE)
        assert assoc.is_established
        try:
            status = assoc.send_c_store(film(seed=60))
        finally:
            assoc.release()
        assert int(status.Status) == 0xA700  # Refused: Out of Resources - the modality keeps the film
        assert (
            metric_value(client, "cxr_pacs_received_total", source="dimse", outcome="out_of_resources") == 1
        )
        assert client.get("/v1/studies").json()["total"] == 0


def test_retention_deletes_spooled_phi_and_logs_hold_none(
    tmp_path: Path, service_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    pacs = pacs_settings(tmp_path / "spool", pacs_retention_s=0.0)
    assert pacs.dicom_port is not None
    source = film(seed=61)
    paths = write_films(tmp_path / "films", [source])
    caplog.set_level(logging.DEBUG)
    with gateway_server(service_settings, pacs) as (_, client):
        assert storescu(pacs.dicom_port, paths, calling=MODALITY_AE).returncode == 0
        (job,) = wait_for("the film triaged", lambda: all_done(client, 1))
        spool = tmp_path / "spool" / SPOOL_FOLDER
        wait_for("the spool emptied by the retention sweep", lambda: not list(spool.iterdir()))
        (job,) = client.get("/v1/studies").json()["studies"][0]["instances"]
        assert job["triage_level"] in ("urgent", "routine")  # the result outlives the film
    forbidden = [*FAKE_PHI_FRAGMENTS, str(source.SOPInstanceUID), str(source.StudyInstanceUID)]
    assert caplog.records
    for record in caplog.records:
        text = f"{record.getMessage()} {record.__dict__}"
        leaked = [value for value in forbidden if value in text]
        assert not leaked, (record.name, record.msg)
