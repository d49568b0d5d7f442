"""A modality stores a film with DCMTK's storescu; its SR and SC land in a real Orthanc, in its study."""

from pathlib import Path
from typing import Any

from bench.orthanc import Orthanc
from service.settings import Settings
from tests.service.live import metric_value
from tests.service.pacs.harness import (
    MODALITY_AE,
    SC_CLASS,
    SR_CLASS,
    all_done,
    delivering_to,
    echoscu,
    film,
    gateway_server,
    storescu,
    wait_for,
    write_films,
)


def _by_class(instances: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {instance["SOPClassUID"]: instance for instance in instances}


def test_film_from_a_modality_comes_back_as_sr_and_sc_in_its_study(
    tmp_path: Path, service_settings: Settings, orthanc: Orthanc
) -> None:
    pacs = delivering_to(orthanc, tmp_path / "spool")
    source = film(seed=3)
    (path,) = write_films(tmp_path / "films", [source])
    study = str(source.StudyInstanceUID)
    # The modality sends the film to the PACS, as it always did, and to us.
    assert storescu(orthanc.dicom_port, [path], calling=MODALITY_AE, called=orthanc.aet).returncode == 0
    with gateway_server(service_settings, pacs) as (_, client):
        assert pacs.dicom_port is not None
        echo = echoscu(pacs.dicom_port, calling=MODALITY_AE)
        assert echo.returncode == 0, echo.stdout + echo.stderr
        sent = storescu(pacs.dicom_port, [path], calling=MODALITY_AE)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        (job,) = wait_for("the film triaged and delivered", lambda: all_done(client, 1))
        assert job["state"] == "done" and job["delivery_state"] == "delivered", job
        assert job["sop_instance_uid"] == source.SOPInstanceUID and job["source"] == "dimse"
        assert job["triage_level"] in ("urgent", "routine") and 0.0 <= job["probability"] <= 1.0
        assert (
            metric_value(client, "cxr_pacs_deliveries_total", destination="dimse", outcome="delivered") == 1
        )
        assert metric_value(client, "cxr_pacs_queue_depth") == 0

    # REST API: the study now holds the film, its SR and its SC, all in the same study.
    held = _by_class(orthanc.study_instances(study))
    assert set(held) == {str(source.SOPClassUID), SR_CLASS, SC_CLASS}
    assert held[SR_CLASS]["SOPInstanceUID"] == job["sr_instance_uid"]
    assert held[SC_CLASS]["SOPInstanceUID"] == job["sc_instance_uid"]
    assert held[SR_CLASS]["PatientID"] == source.PatientID  # copied, so the viewer files it together
    sc_source = held[SC_CLASS]["SourceImageSequence"][0]
    assert sc_source["ReferencedSOPInstanceUID"] == source.SOPInstanceUID
    evidence = held[SR_CLASS]["CurrentRequestedProcedureEvidenceSequence"][0]
    referenced = evidence["ReferencedSeriesSequence"][0]["ReferencedSOPSequence"][0]
    assert referenced["ReferencedSOPInstanceUID"] == source.SOPInstanceUID
    assert evidence["StudyInstanceUID"] == study

    # QIDO-RS sees the same three instances.
    qido = {
        item["00080018"]["Value"][0]: item["00080016"]["Value"][0] for item in orthanc.qido_instances(study)
    }
    assert qido == {
        source.SOPInstanceUID: source.SOPClassUID,
        job["sr_instance_uid"]: SR_CLASS,
        job["sc_instance_uid"]: SC_CLASS,
    }
