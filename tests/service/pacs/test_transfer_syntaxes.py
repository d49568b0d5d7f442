"""Compressed films over DIMSE, each in its own transfer syntax, are taken in and triaged (the SCP
accepts what the contract decodes)."""

import io
from pathlib import Path

import pydicom
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import AE

from service.settings import Settings
from tests.factories import deflated_dicom_bytes, dicom_bytes
from tests.service.pacs.harness import (
    MODALITY_AE,
    SERVICE_AE,
    all_done,
    film,
    gateway_server,
    pacs_settings,
    wait_for,
)

SYNTAXES = (
    RLELossless,
    JPEGLSLossless,
    JPEG2000Lossless,
    DeflatedExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)


def _encoded(syntax: UID, seed: int) -> pydicom.Dataset:
    ds = film(seed=seed)
    if syntax == DeflatedExplicitVRLittleEndian:
        data = deflated_dicom_bytes(ds)
    elif syntax == ImplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        data = dicom_bytes(ds)
    else:
        data = dicom_bytes(ds, transfer_syntax=syntax)
    return pydicom.dcmread(io.BytesIO(data))


def test_each_transfer_syntax_is_triaged(tmp_path: Path, service_settings: Settings) -> None:
    pacs = pacs_settings(tmp_path / "spool")
    assert pacs.dicom_port is not None
    films = {syntax: _encoded(syntax, 80 + index) for index, syntax in enumerate(SYNTAXES)}
    with gateway_server(service_settings, pacs) as (_, client):
        modality = AE(ae_title=MODALITY_AE)
        for syntax in SYNTAXES:  # one context per syntax: each film goes in its own
            modality.add_requested_context(DigitalXRayImageStorageForPresentation, syntax)
        modality.add_requested_context(DigitalXRayImageStorageForPresentation, ExplicitVRBigEndian)
        assoc = modality.associate("127.0.0.1", pacs.dicom_port, ae_title=SERVICE_AE)
        assert assoc.is_established
        try:
            accepted = {str(context.transfer_syntax[0]) for context in assoc.accepted_contexts}
            assert accepted == {*map(str, SYNTAXES), str(ExplicitVRBigEndian)}
            for syntax, ds in films.items():
                status = assoc.send_c_store(ds)
                assert int(status.Status) == 0x0000, syntax.name
        finally:
            assoc.release()
        jobs = wait_for("every film triaged", lambda: all_done(client, len(SYNTAXES)))
    assert {job["state"] for job in jobs} == {"done"}, [(job["state"], job["reason"]) for job in jobs]
    assert {job["sop_instance_uid"] for job in jobs} == {str(ds.SOPInstanceUID) for ds in films.values()}
