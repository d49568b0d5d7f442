"""PACS settings: ``CXR_DICOM_*`` (the C-STORE SCP) and ``CXR_PACS_*`` (spool, queue, destinations).

Read from the same ``CXR_`` environment as ``service.settings.Settings``, kept apart so the PACS
integration stays in its own package. Lists are comma-separated (AE titles, networks).
"""

import ipaddress
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

GIB = 1024 * 1024 * 1024
_AE_TITLE_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 !\"#$%&'()*+,-./:;<=>?@[]^_`{|}~"
)


def _ae_title(value: str) -> str:
    title = value.strip()
    if not 1 <= len(title) <= 16 or not set(title) <= _AE_TITLE_CHARS:
        raise ValueError("an AE title is 1-16 printable ASCII characters, no backslash")
    return title


class PacsSettings(BaseSettings):
    """Where films arrive over DICOM, where they wait, and where the results go."""

    model_config = SettingsConfigDict(env_prefix="CXR_", frozen=True, extra="ignore")

    # --- intake: the C-STORE SCP -------------------------------------------------------------------
    dicom_port: int | None = Field(
        None, ge=1, le=65535, description="Start the C-STORE SCP on this port; unset = no DIMSE intake."
    )
    dicom_host: str = Field("127.0.0.1", min_length=1, description="Bind address of the SCP.")
    dicom_ae_title: str = Field("CXR-TRIAGE", description="Our AE title (the called AE modalities use).")
    dicom_allowed_aes: str = Field(
        "",
        description="Comma-separated calling AE titles allowed to associate; empty = any (warned about).",
    )
    dicom_allowed_peers: str = Field(
        "",
        description="Comma-separated addresses or networks (CIDR) allowed to connect; empty = any.",
    )
    dicom_tls_cert: Path | None = Field(None, description="PEM certificate: the SCP speaks DICOM TLS.")
    dicom_tls_key: Path | None = Field(None, description="PEM private key for dicom_tls_cert.")
    dicom_tls_ca: Path | None = Field(
        None, description="PEM CA bundle: with it, a modality must present a certificate it signed."
    )
    # --- the durable queue -------------------------------------------------------------------------
    pacs_spool_dir: Path | None = Field(
        None,
        description="Spool for received instances and built results, and the SQLite job table "
        "(jobs.sqlite3). Needed for DICOM intake; unset = no PACS integration at all.",
    )
    pacs_spool_max_bytes: int = Field(
        10 * GIB, gt=0, description="Bytes of spooled files beyond which intake answers out of resources."
    )
    pacs_spool_min_free_bytes: int = Field(
        512 * 1024 * 1024, ge=0, description="Free disk below which intake answers out of resources."
    )
    pacs_retention_s: float = Field(
        86400.0,
        ge=0.0,
        description="Spooled films and results (PHI) are deleted this long after their job is done or "
        "dead-lettered; the job row (UIDs and result only) stays for the worklist.",
    )
    pacs_workers: int = Field(4, ge=1, le=64, description="Films triaged at once (they share micro-batches).")
    pacs_max_attempts: int = Field(
        3,
        ge=1,
        le=100,
        description="Triage attempts (unexpected failures, restarts mid-triage) before a film is "
        "dead-lettered. A film the contract refuses is dead-lettered at once.",
    )
    pacs_poll_s: float = Field(1.0, gt=0.0, le=60.0, description="Idle workers look for work this often.")
    # --- results back --------------------------------------------------------------------------------
    pacs_dest_host: str | None = Field(None, description="C-STORE destination host (the PACS).")
    pacs_dest_port: int | None = Field(None, ge=1, le=65535, description="C-STORE destination port.")
    pacs_dest_ae_title: str = Field("PACS", description="C-STORE destination AE title (called AE).")
    pacs_stow_url: str | None = Field(
        None, description="DICOMweb base URL results are STOW-RS'd to, e.g. http://pacs:8042/dicom-web."
    )
    pacs_retry_base_s: float = Field(
        5.0, gt=0.0, le=3600.0, description="First delivery retry after this long; doubles each time."
    )
    pacs_retry_max_s: float = Field(300.0, gt=0.0, le=86400.0, description="Longest wait between retries.")
    pacs_stow_max_bytes: int = Field(
        512 * 1024 * 1024,
        gt=0,
        description="Largest STOW-RS request body; each instance also obeys CXR_MAX_UPLOAD_BYTES.",
    )

    @field_validator("dicom_ae_title", "pacs_dest_ae_title")
    @classmethod
    def _check_ae_title(cls, value: str) -> str:
        return _ae_title(value)

    @field_validator("dicom_allowed_aes")
    @classmethod
    def _check_ae_list(cls, value: str) -> str:
        for title in _split(value):
            _ae_title(title)
        return value

    @field_validator("dicom_allowed_peers")
    @classmethod
    def _check_networks(cls, value: str) -> str:
        for network in _split(value):
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "PacsSettings":
        if self.pacs_spool_dir is None and (self.dicom_port is not None or self.destination_configured):
            raise ValueError("CXR_DICOM_PORT and the CXR_PACS_DEST_*/STOW settings need CXR_PACS_SPOOL_DIR")
        if (self.pacs_dest_host is None) != (self.pacs_dest_port is None):
            raise ValueError("set both CXR_PACS_DEST_HOST and CXR_PACS_DEST_PORT, or neither")
        if (self.dicom_tls_cert is None) != (self.dicom_tls_key is None):
            raise ValueError("set both CXR_DICOM_TLS_CERT and CXR_DICOM_TLS_KEY, or neither")
        if self.dicom_tls_ca is not None and self.dicom_tls_cert is None:
            raise ValueError("CXR_DICOM_TLS_CA needs CXR_DICOM_TLS_CERT and CXR_DICOM_TLS_KEY")
        if self.pacs_stow_url is not None and not self.pacs_stow_url.startswith(("http://", "https://")):
            raise ValueError("CXR_PACS_STOW_URL must be an http:// or https:// URL")
        return self

    @property
    def enabled(self) -> bool:
        return self.pacs_spool_dir is not None

    @property
    def destination_configured(self) -> bool:
        return self.pacs_dest_host is not None or self.pacs_stow_url is not None

    @property
    def allowed_aes(self) -> list[str]:
        return [title.strip() for title in _split(self.dicom_allowed_aes)]

    @property
    def allowed_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(network, strict=False) for network in _split(self.dicom_allowed_peers)]


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def pacs_variable_names() -> frozenset[str]:
    """The ``CXR_*`` names these settings read (so start-up does not warn about them as unknown)."""
    return frozenset(f"CXR_{name.upper()}" for name in PacsSettings.model_fields)
