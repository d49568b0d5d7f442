"""Nothing lost, nothing twice: the PACS down during delivery, and the service SIGKILLed mid-queue."""

import signal
import sqlite3
from pathlib import Path

import httpx

from bench.orthanc import Orthanc
from bench.service_process import free_port
from service.pacs.gateway import JOB_TABLE
from service.settings import Settings
from tests.service.live import AUTH_HEADERS, metric_value, service_env
from tests.service.pacs.harness import (
    MODALITY_AE,
    SERVICE_AE,
    all_done,
    delivering_to,
    film,
    gateway_process,
    gateway_server,
    instances,
    storescu,
    wait_for,
    write_films,
)


def _results_held(orthanc: Orthanc, study: str) -> list[str]:
    return sorted(instance["SOPInstanceUID"] for instance in orthanc.study_instances(study))


def test_pacs_down_during_delivery_then_back(
    tmp_path: Path, service_settings: Settings, orthanc: Orthanc
) -> None:
    # The "back after a minute", shortened: back-off from 0.2 s, doubling, capped at 1 s.
    pacs = delivering_to(orthanc, tmp_path / "spool")
    first = film(seed=10)
    study = str(first.StudyInstanceUID)
    paths = write_films(tmp_path / "films", [first, film(study, seed=11), film(study, seed=12)])
    orthanc.stop()
    with gateway_server(service_settings, pacs) as (_, client):
        assert pacs.dicom_port is not None
        assert storescu(pacs.dicom_port, paths, calling=MODALITY_AE).returncode == 0

        def retried_twice() -> bool:
            jobs = instances(client)
            return len(jobs) == 3 and all(job["delivery_attempts"] >= 2 for job in jobs)

        wait_for("every delivery to fail at least twice", retried_twice)
        assert {job["delivery_state"] for job in instances(client)} == {"retrying"}
        assert metric_value(client, "cxr_pacs_undelivered_jobs") == 3
        orthanc.start()
        jobs = wait_for("all results delivered once the PACS is back", lambda: all_done(client, 3))
        assert {job["delivery_state"] for job in jobs} == {"delivered"}
        # Each job was delivered exactly once, however many rounds failed before.
        assert (
            metric_value(client, "cxr_pacs_deliveries_total", destination="dimse", outcome="delivered") == 3
        )
        assert metric_value(client, "cxr_pacs_delivery_retries_total", destination="dimse") >= 6
    expected = sorted(uid for job in jobs for uid in (job["sr_instance_uid"], job["sc_instance_uid"]))
    assert _results_held(orthanc, study) == expected
    assert orthanc.instance_count() == 6


def test_sigkill_with_jobs_queued_and_in_flight(
    tmp_path: Path, service_settings: Settings, orthanc: Orthanc
) -> None:
    spool = tmp_path / "spool"
    dicom_port = free_port()
    assert service_settings.model_dir is not None and service_settings.api_keys_file is not None
    env = service_env(
        port=str(free_port()),
        model_dir=str(service_settings.model_dir),
        api_keys_file=str(service_settings.api_keys_file),
        execution_provider="cpu",
        dicom_port=str(dicom_port),
        dicom_ae_title=SERVICE_AE,
        dicom_allowed_aes=MODALITY_AE,
        pacs_spool_dir=str(spool),
        pacs_workers="1",
        pacs_poll_s="0.2",
        pacs_retry_base_s="0.2",
        pacs_retry_max_s="1",
        pacs_dest_host="127.0.0.1",
        pacs_dest_port=str(orthanc.dicom_port),
        pacs_dest_ae_title=orthanc.aet,
    )
    first = film(seed=20)
    study = str(first.StudyInstanceUID)
    films = [first, *(film(study, seed=21 + i) for i in range(29))]
    paths = write_films(tmp_path / "films", films)
    log = (tmp_path / "service.log").open("wb")
    with gateway_process(env, log) as (process, _):
        sent = storescu(dicom_port, paths, calling=MODALITY_AE)
        assert sent.returncode == 0, sent.stdout + sent.stderr  # every instance acknowledged
        process.send_signal(signal.SIGKILL)
        process.wait()
    # Killed with work left: some films not yet triaged or delivered (asserted, so the test means it).
    with sqlite3.connect(spool / JOB_TABLE) as db:
        states = dict(db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
    assert sum(states.values()) == 30, states
    assert states.get("done", 0) < 30, f"all done before the kill; nothing was in flight: {states}"

    with (
        gateway_process(env, log) as (_, url),
        httpx.Client(base_url=url, headers=AUTH_HEADERS, timeout=60.0) as client,
    ):
        jobs = wait_for("every acknowledged film triaged and delivered", lambda: all_done(client, 30))
    assert {job["state"] for job in jobs} == {"done"}
    assert {job["delivery_state"] for job in jobs} == {"delivered"}
    assert {job["sop_instance_uid"] for job in jobs} == {str(ds.SOPInstanceUID) for ds in films}
    expected = sorted(uid for job in jobs for uid in (job["sr_instance_uid"], job["sc_instance_uid"]))
    assert _results_held(orthanc, study) == expected  # one SR and one SC per film: nothing twice
    assert orthanc.instance_count() == 60
