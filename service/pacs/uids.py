"""Result UIDs derived from the source instance and the model, so a retried job files no second copy.

The builders in ``service.dicom_results`` draw fresh UIDs, which suits ``/v1/predict`` (each request
its own objects). Here the same film triaged twice by the same model - a retry after a crash, a
modality re-sending - must produce the very same SOP Instance UIDs, so the PACS sees one object, not
two. ``stamp`` re-labels the built object; the builders stay the one place that builds.
"""

import io

import pydicom
from pydicom.uid import UID, generate_uid

# pydicom's UID root for derived UIDs (a hash of the entropy sources follows it).
_NAMESPACE = "cxr-triage/pacs"


def result_uid(kind: str, source_sop_instance_uid: str, model_name: str, model_version: str) -> str:
    """SOP Instance UID of the ``kind`` ("sr" or "sc") result for one source instance and model."""
    return str(
        generate_uid(entropy_srcs=[_NAMESPACE, kind, source_sop_instance_uid, model_name, model_version])
    )


def series_uid(kind: str, study_instance_uid: str, model_name: str, model_version: str) -> str:
    """One result series per study, kind and model version: every film's SR of a study in one series."""
    return str(
        generate_uid(entropy_srcs=[_NAMESPACE, kind, "series", study_instance_uid, model_name, model_version])
    )


def stamp(part10: bytes, *, sop_instance_uid: str, series_instance_uid: str, instance_number: int) -> bytes:
    """``part10`` with its SOP Instance UID (dataset and file meta), series and instance number replaced."""
    ds = pydicom.dcmread(io.BytesIO(part10))
    ds.SOPInstanceUID = sop_instance_uid
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    ds.SeriesInstanceUID = series_instance_uid
    ds.InstanceNumber = instance_number
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
