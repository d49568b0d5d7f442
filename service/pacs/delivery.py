"""Results back to the PACS: C-STORE SCU to a DICOM destination and/or STOW-RS to a DICOMweb endpoint.

Each destination takes one round's jobs (each job = its SR and SC, Part 10 bytes) and says, per job,
whether the destination now holds both. Errors are our own words plus the library's exception type,
never a response body (a PACS may echo patient data in one).
"""

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ComprehensiveSRStorage, ExplicitVRLittleEndian, SecondaryCaptureImageStorage
from pynetdicom import AE
from pynetdicom.association import Association

# C-STORE statuses a destination may answer for a stored instance: success and the warnings.
_STORED = frozenset({0x0000, 0xB000, 0xB007, 0xB006})
DIMSE = "dimse"
STOW = "stow"


@dataclass(frozen=True)
class Parcel:
    key: str  # the job's SOP Instance UID (never logged)
    instances: Sequence[bytes]


class Destination(Protocol):
    name: str

    def deliver(self, parcels: Sequence[Parcel]) -> dict[str, str | None]:
        """Per parcel key: None = delivered, else why not."""
        ...


def _dataset(part10: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(part10))


class DimseDestination:
    """One association per round, both results of every job sent over it."""

    name = DIMSE

    def __init__(
        self, host: str, port: int, called_ae: str, calling_ae: str, timeout_s: float = 30.0
    ) -> None:
        self.host, self.port, self.called_ae = host, port, called_ae
        self._ae = AE(ae_title=calling_ae)
        for sop_class in (ComprehensiveSRStorage, SecondaryCaptureImageStorage):
            self._ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
        self._ae.acse_timeout = timeout_s
        self._ae.dimse_timeout = timeout_s
        self._ae.network_timeout = timeout_s

    def deliver(self, parcels: Sequence[Parcel]) -> dict[str, str | None]:
        assoc = self._ae.associate(self.host, self.port, ae_title=self.called_ae)
        if not assoc.is_established:
            why = "association rejected" if assoc.is_rejected else "destination unreachable or aborted"
            return {parcel.key: f"C-STORE: {why}" for parcel in parcels}
        outcome: dict[str, str | None] = {}
        try:
            for parcel in parcels:
                outcome[parcel.key] = self._send(assoc, parcel)
        finally:
            if assoc.is_established:
                assoc.release()
        return outcome

    @staticmethod
    def _send(assoc: Association, parcel: Parcel) -> str | None:
        for part10 in parcel.instances:
            if not assoc.is_established:
                return "C-STORE: association lost"
            status = assoc.send_c_store(_dataset(part10))
            code = int(status.Status) if "Status" in status else None
            if code not in _STORED:
                return "C-STORE: no answer" if code is None else f"C-STORE: status 0x{code:04X}"
        return None


class StowDestination:
    """One STOW-RS request per job (dicomweb-client), both results in it."""

    name = STOW

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        from dicomweb_client.api import DICOMwebClient

        self._client = DICOMwebClient(url=url, timeout=timeout_s)

    def deliver(self, parcels: Sequence[Parcel]) -> dict[str, str | None]:
        return {parcel.key: self._send(parcel) for parcel in parcels}

    def _send(self, parcel: Parcel) -> str | None:
        try:
            response = self._client.store_instances([_dataset(part10) for part10 in parcel.instances])
        except Exception as exc:  # requests' connection and HTTP errors; their text may quote the body
            return f"STOW-RS: {type(exc).__name__}"
        failed = response.get("FailedSOPSequence") if response is not None else None
        if failed:
            return f"STOW-RS: {len(failed)} instance(s) refused"
        return None
