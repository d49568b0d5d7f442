"""The audit trail: one JSON line per request on the ``service.observability.audit`` logger.

Who called (the key id, never the key), which model answered, what came in (format and size) and
how it ended (status, error code, latency). The film is named only by a hash of its SOP Instance
UID - keyed with ``CXR_AUDIT_HASH_KEY_FILE`` when set, so that only whoever holds that key can
link a known study to its line. Names, IDs, dates, raw UIDs and pixels never reach this line.

The request middleware creates the record and writes the line; the layers in between (access
control, the predict route, the error handlers) fill in what only they know through
``current_audit()``.
"""

import hashlib
import hmac
import logging
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.contract import InputError
from service.contract.sniff import sniff_format

logger = logging.getLogger("service.audit")


class AuditKeyError(ValueError):
    """The audit hash key file cannot be used; the message holds no key material."""


@dataclass
class AuditRecord:
    key_id: str | None = None
    code: str | None = None  # the error code of a 4xx/5xx {code, detail} answer
    model_name: str | None = None
    model_version: str | None = None
    input_format: str | None = None
    input_bytes: int | None = None
    # Held for the hash only; repr=False so the raw UID cannot slip into a log through the record.
    sop_instance_uid: str | None = field(default=None, repr=False)

    def note_upload(self, data: bytes) -> None:
        self.input_bytes = len(data)
        try:
            self.input_format = sniff_format(data).value
        except InputError:
            self.input_format = None  # empty or unrecognised: the error code says which


_record_var: ContextVar[AuditRecord | None] = ContextVar("cxr_audit_record", default=None)


def start_audit() -> tuple[AuditRecord, Any]:
    """A fresh record for this request, and the token that ``end_audit`` needs."""
    record = AuditRecord()
    return record, _record_var.set(record)


def end_audit(token: Any) -> None:
    _record_var.reset(token)


def current_audit() -> AuditRecord:
    """This request's record; outside a request, a throwaway one, so callers never need to check."""
    record = _record_var.get()
    return record if record is not None else AuditRecord()


class UidHasher:
    """SHA-256 of a UID, or HMAC-SHA256 under the deployment's key; tagged with which one it is."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key

    @classmethod
    def from_file(cls, path: Path | None) -> "UidHasher":
        if path is None:
            return cls()
        try:
            key = path.read_bytes().strip()
        except OSError as exc:
            raise AuditKeyError(
                f"CXR_AUDIT_HASH_KEY_FILE={path} cannot be read ({type(exc).__name__})"
            ) from None
        if len(key) < 16:
            raise AuditKeyError(f"CXR_AUDIT_HASH_KEY_FILE={path} must hold a key of at least 16 bytes")
        return cls(key)

    def __call__(self, uid: str) -> str:
        data = uid.encode("ascii", errors="replace")
        if self._key is None:
            return "sha256:" + hashlib.sha256(data).hexdigest()
        return "hmac-sha256:" + hmac.new(self._key, data, hashlib.sha256).hexdigest()


def log_request(
    record: AuditRecord,
    hasher: UidHasher,
    *,
    method: str,
    route: str,
    status: int,
    duration_ms: float,
    level: int = logging.INFO,
) -> None:
    uid = record.sop_instance_uid
    logger.log(
        level,
        "request",
        extra={
            "method": method,
            "route": route,
            "status": status,
            "code": record.code,
            "duration_ms": duration_ms,
            "key_id": record.key_id,
            "model_name": record.model_name,
            "model_version": record.model_version,
            "input_format": record.input_format,
            "input_bytes": record.input_bytes,
            "sop_instance_uid_hash": hasher(uid) if uid else None,
        },
    )
