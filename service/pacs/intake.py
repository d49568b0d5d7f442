"""One received instance, from the SCP or STOW-RS, to a spooled file and a queued job - or a refusal.

Only the header is read here (no pixels); whether the film itself is usable is the worker's
question, answered with the contract and, if no, a dead letter with the contract's reason.
"""

import io
import logging
import threading
from dataclasses import dataclass, replace

import pydicom
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
)

from service.contract.codestream import BOUNDED_OUTPUT
from service.observability.audit import UidHasher
from service.pacs.jobs import JobTable, NewJob
from service.pacs.spool import Spool, SpoolFullError

logger = logging.getLogger(__name__)

# CR, DX (for presentation and for processing) and Secondary Capture: what a chest film arrives as.
ACCEPTED_SOP_CLASSES = (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
)
# The transfer syntaxes the contract decodes: native, deflate, and the encapsulated ones whose size
# it checks before decoding (JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE).
NATIVE_TRANSFER_SYNTAXES = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)
ACCEPTED_TRANSFER_SYNTAXES = (*NATIVE_TRANSFER_SYNTAXES, *sorted(BOUNDED_OUTPUT))

# DIMSE C-STORE statuses (PS3.4 B.2.3); STOW-RS reports the same codes as Failure Reason.
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
SOP_CLASS_NOT_SUPPORTED = 0x0122
PROCESSING_FAILURE = 0x0110


@dataclass(frozen=True)
class Received:
    status: int
    reason: str  # our words, never a value from the file
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    duplicate: bool = False

    @property
    def stored(self) -> bool:
        return self.status == SUCCESS

    @property
    def outcome(self) -> str:
        """The metrics label: stored, duplicate, out_of_resources or refused."""
        if self.status == SUCCESS:
            return "duplicate" if self.duplicate else "stored"
        return "out_of_resources" if self.status == OUT_OF_RESOURCES else "refused"


class Intake:
    """Spool + job table behind one ``receive`` call; safe to call from many threads."""

    def __init__(self, spool: Spool, jobs: JobTable, hasher: UidHasher) -> None:
        self.spool = spool
        self.jobs = jobs
        self.hasher = hasher
        self.queued = threading.Event()  # set on every new job: wakes an idle worker

    def receive(self, data: bytes, source: str, *, study_instance_uid: str | None = None) -> Received:
        """Durably queue one Part 10 instance. Success is returned only once file and row are on disk."""
        header = read_header(data)
        if isinstance(header, Received):
            return header
        refusal = _refusal(header, study_instance_uid)
        if refusal is not None:
            return replace(header.received, status=refusal[0], reason=refusal[1])
        try:
            name = self.spool.write(data)
        except (SpoolFullError, OSError) as exc:
            logger.warning("intake refused: spool full or not writable", extra={"error": type(exc).__name__})
            return replace(header.received, status=OUT_OF_RESOURCES, reason="spool full: retry later")
        received = header.received
        job = NewJob(
            received.sop_instance_uid,
            received.study_instance_uid,
            header.series_instance_uid,
            received.sop_class_uid,
            source,
            name,
        )
        try:
            fresh = self.jobs.record(job)
        except Exception:
            self.spool.delete(name)
            raise
        if not fresh:  # already queued or done: one job per SOP Instance UID
            self.spool.delete(name)
        else:
            self.queued.set()
        logger.info(
            "instance received",
            extra={"job": self.hasher(received.sop_instance_uid), "source": source, "duplicate": not fresh},
        )
        return replace(received, duplicate=not fresh)


@dataclass(frozen=True)
class Header:
    received: Received  # success, with the instance's UIDs, until a check says otherwise
    series_instance_uid: str
    transfer_syntax_uid: str


def read_header(data: bytes) -> Header | Received:
    """The UIDs intake needs, read without the pixels; a ``Received`` refusal for unreadable bytes."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        received = Received(
            SUCCESS, "stored", str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(ds.StudyInstanceUID)
        )
        return Header(
            received, str(ds.get("SeriesInstanceUID", "") or ""), str(ds.file_meta.TransferSyntaxUID)
        )
    except Exception:  # hostile bytes: anything pydicom raises
        return Received(
            CANNOT_UNDERSTAND, "not a DICOM Part 10 instance with SOP Class, SOP Instance and Study UIDs"
        )


def _refusal(header: Header, study_instance_uid: str | None) -> tuple[int, str] | None:
    if header.received.sop_class_uid not in ACCEPTED_SOP_CLASSES:
        return SOP_CLASS_NOT_SUPPORTED, "only CR, DX and Secondary Capture images are triaged"
    if header.transfer_syntax_uid not in ACCEPTED_TRANSFER_SYNTAXES:
        return DATASET_MISMATCH, "transfer syntax not supported"
    if study_instance_uid is not None and header.received.study_instance_uid != study_instance_uid:
        return DATASET_MISMATCH, "instance belongs to another study than the request's"
    return None
