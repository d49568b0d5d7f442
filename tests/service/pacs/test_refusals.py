"""What the gateway refuses, and how: unknown callers, unsupported SOP classes, films the contract
refuses (dead-lettered with the reason). The SCP keeps serving and the queue keeps moving."""

from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID, CTImageStorage, SecondaryCaptureImageStorage

from service.pacs.jobs import MAX_OFFSET
from service.settings import Settings
from tests.service.live import metric_value
from tests.service.pacs.harness import (
    MODALITY_AE,
    all_done,
    echoscu,
    film,
    gateway_server,
    pacs_settings,
    storescu,
    wait_for,
    write_films,
)

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def _as_class(sop_class: str, seed: int, **edits: Any) -> Dataset:
    ds = film(seed=seed, **edits)
    ds.SOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    return ds


def test_refused_and_dead_lettered_while_the_scp_keeps_serving(
    tmp_path: Path, service_settings: Settings
) -> None:
    pacs = pacs_settings(tmp_path / "spool")
    assert pacs.dicom_port is not None
    port = pacs.dicom_port
    truncated = film(seed=33)
    truncated.PixelData = truncated.PixelData[: len(truncated.PixelData) // 3]
    ct_as_sc = _as_class(SecondaryCaptureImageStorage, 34, Modality="CT")
    bad = write_films(tmp_path / "bad", [truncated, ct_as_sc])
    (ct,) = write_films(tmp_path / "ct", [_as_class(CTImageStorage, 31, Modality="CT")])
    (text_sr,) = write_films(tmp_path / "sr", [_as_class(BASIC_TEXT_SR, 32)])
    good = film(seed=35)
    (good_path,) = write_films(tmp_path / "good", [good])
    with gateway_server(service_settings, pacs) as (_, client):
        # An unknown calling AE title: the association is rejected.
        stranger = storescu(port, [good_path], calling="STRANGER")
        assert stranger.returncode != 0
        assert "rejected" in (stranger.stdout + stranger.stderr).lower()
        assert metric_value(client, "cxr_pacs_associations_refused_total", reason="calling_ae") == 1
        # A CT and a non-image SOP class find no presentation context: nothing stored.
        for path in (ct, text_sr):
            refused = storescu(port, [path], calling=MODALITY_AE)
            assert refused.returncode != 0, refused.stdout + refused.stderr
        assert metric_value(client, "cxr_pacs_received_total", source="dimse", outcome="stored") == 0
        # A corrupt pixel stream and a CT sent as Secondary Capture: accepted, then dead-lettered.
        assert storescu(port, bad, calling=MODALITY_AE).returncode == 0
        # The SCP still answers, and the next film is triaged: the poison films block nothing.
        assert echoscu(port, calling=MODALITY_AE).returncode == 0
        assert storescu(port, [good_path], calling=MODALITY_AE).returncode == 0
        jobs = {
            job["sop_instance_uid"]: job for job in wait_for("3 jobs finished", lambda: all_done(client, 3))
        }
        assert jobs[good.SOPInstanceUID]["state"] == "done"
        assert jobs[good.SOPInstanceUID]["triage_level"] in ("urgent", "routine")
        dead_truncated = jobs[str(truncated.SOPInstanceUID)]
        dead_ct = jobs[str(ct_as_sc.SOPInstanceUID)]
        assert dead_truncated["state"] == "dead" and dead_truncated["reason"].startswith("corrupt"), (
            dead_truncated
        )
        assert dead_ct["state"] == "dead" and dead_ct["reason"].startswith("unsupported_modality"), dead_ct
        assert metric_value(client, "cxr_pacs_dead_letter_jobs") == 2
        # Dead letters stay visible, with their reason, in the worklist; no triage level.
        dead = [s for s in client.get("/v1/studies").json()["studies"] if s["triage_level"] is None]
        assert len(dead) == 2


def test_peer_outside_the_allowed_networks_is_disconnected(
    tmp_path: Path, service_settings: Settings
) -> None:
    pacs = pacs_settings(tmp_path / "spool", dicom_allowed_peers="192.0.2.0/24")
    assert pacs.dicom_port is not None
    (path,) = write_films(tmp_path / "films", [film(seed=40)])
    with gateway_server(service_settings, pacs) as (_, client):
        assert echoscu(pacs.dicom_port, calling=MODALITY_AE).returncode != 0
        assert storescu(pacs.dicom_port, [path], calling=MODALITY_AE).returncode != 0
        assert metric_value(client, "cxr_pacs_associations_refused_total", reason="peer") >= 2
        assert client.get("/v1/studies").json()["total"] == 0


def test_a_study_list_offset_past_what_the_store_holds_is_a_422_not_a_500(
    tmp_path: Path, service_settings: Settings
) -> None:
    # Found by the schemathesis run: offset=2037213301580736172654592 overflowed SQLite's INTEGER.
    pacs = pacs_settings(tmp_path / "spool")
    with gateway_server(service_settings, pacs) as (_, client):
        too_far = client.get("/v1/studies", params={"offset": MAX_OFFSET + 1})
        assert too_far.status_code == 422, too_far.text
        assert "offset" in too_far.text
        last = client.get("/v1/studies", params={"offset": MAX_OFFSET})
        assert last.status_code == 200 and last.json()["studies"] == []
        assert client.get("/readyz").status_code == 200


def test_received_after_takes_an_iso_date_time_with_a_zone_and_nothing_else(
    tmp_path: Path, service_settings: Settings
) -> None:
    # Found by the schemathesis run: received_after=6.588752661348557e-33 was read as a Unix time.
    pacs = pacs_settings(tmp_path / "spool")
    with gateway_server(service_settings, pacs) as (_, client):
        for good in ("2026-12-06T08:00:00Z", "2026-12-06T09:00:00+01:00", "2026-12-06 08:00:00.5+00:00"):
            answer = client.get("/v1/studies", params={"received_after": good})
            assert answer.status_code == 200, (good, answer.text)
        for bad in (
            "6.588752661348557e-33",
            "1733480000",
            "2026-12-06T08:00:00",
            "yesterday",
            "2026-13-01T00:00Z",
        ):
            answer = client.get("/v1/studies", params={"received_after": bad})
            assert answer.status_code == 422, (bad, answer.text)
            assert "received_after" in answer.text
        assert client.get("/readyz").status_code == 200
