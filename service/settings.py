"""Service configuration: one ``Settings`` object read from ``CXR_*`` environment variables.

Every field is validated when the object is built, so a typo'd port or a negative limit stops the
process before it binds a socket instead of surfacing on the first request.
"""

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.contract.decoded import (
    DEFAULT_MAX_DECODED_BYTES,
    DEFAULT_MAX_DICOM_DEPTH,
    DEFAULT_MAX_DICOM_ELEMENTS,
    DEFAULT_MAX_DICOM_HEADER_BYTES,
    DecodeLimits,
)

MIB = 1024 * 1024
LATEST = "latest"
ACTIVE = "active"
# CXR_MODEL_VERSION values that are not folder names: a version folder cannot be called either.
SPECIAL_VERSIONS = frozenset({LATEST, ACTIVE})
# Model names and versions become path components under the store: no separators, no "..".
_PATH_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Polling the store more often than this costs CPU and buys nothing a roll-out would notice.
MIN_WATCH_S = 0.1

LogLevel = Literal["critical", "error", "warning", "info", "debug"]
ExecutionProvider = Literal["auto", "cuda", "tensorrt", "cpu"]
AuthMode = Literal["required", "disabled"]


class Settings(BaseSettings):
    """How the service finds its model, what it accepts, and where it listens."""

    # ``model_`` is pydantic's reserved prefix; these names are part of the public CXR_ interface.
    model_config = SettingsConfigDict(
        env_prefix="CXR_", frozen=True, extra="forbid", protected_namespaces=("settings_",)
    )

    model_store: Path = Field(Path("models"), description="Directory holding <name>/<version>/ model dirs.")
    model_name: str = Field("cxr-pneumonia", description="Model name: a directory under model_store.")
    model_version: str = Field(
        LATEST,
        description="Version directory; 'latest' = last sorted version dir that has a model_card.json; "
        "'active' = the version named by the store's pointer file <model_store>/<model_name>/ACTIVE "
        "(written by 'python -m training publish' and 'activate').",
    )
    model_dir: Path | None = Field(
        None, description="Explicit version directory; overrides model_store/model_name/model_version."
    )
    model_watch_s: float = Field(
        0.0,
        ge=0.0,
        le=3600.0,
        description="0 = off. Otherwise, every this many seconds, see whether 'active' (the pointer) or "
        "'latest' now resolves to another version, and if so reload it exactly as POST "
        "/v1/admin/reload does: verified, swapped only if every check passes.",
    )
    max_upload_bytes: int = Field(32 * MIB, gt=0, description="Largest accepted file, in bytes.")
    max_pixels: int = Field(50_000_000, gt=0, description="Largest accepted image, width x height.")
    max_decoded_bytes: int = Field(
        DEFAULT_MAX_DECODED_BYTES,
        gt=0,
        description="Largest image in bytes as the decoder holds it (pixels x channels x bytes per "
        "sample), checked from the header before decoding: 422 decoded_too_large.",
    )
    dicom_max_depth: int = Field(
        DEFAULT_MAX_DICOM_DEPTH, ge=1, le=64, description="Deepest sequence nesting in a DICOM header (400)."
    )
    dicom_max_elements: int = Field(
        DEFAULT_MAX_DICOM_ELEMENTS,
        ge=16,
        le=1_000_000,
        description="Most data elements (sequence items included) in a DICOM header (400).",
    )
    dicom_max_header_bytes: int = Field(
        DEFAULT_MAX_DICOM_HEADER_BYTES,
        ge=1024,
        description="Most bytes of DICOM values other than the pixel data (400).",
    )
    max_header_bytes: int = Field(
        16 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="Largest request line + headers, in bytes: 431 headers_too_large (414 when the "
        "request line alone is longer).",
    )
    max_header_count: int = Field(64, ge=8, le=1000, description="Most header fields in a request: 431.")
    request_head_timeout_s: float = Field(
        10.0,
        gt=0.0,
        le=300.0,
        description="Time a connection has to send a whole request head (request line + headers), "
        "from connecting or from the end of its previous response: past it 408 request_head_too_slow "
        "and the connection is closed (slow-header attacks hold no socket for long).",
    )
    trim_heap_when_idle: bool = Field(
        True,
        description="Call glibc's malloc_trim once no prediction has been running or queued for "
        "CXR_TRIM_HEAP_IDLE_S, so the memory of a burst of large films goes back to the OS "
        "(reports/bench/upload-memory).",
    )
    trim_heap_idle_s: float = Field(
        1.0,
        ge=0.0,
        le=60.0,
        description="How long the service stays idle before the heap is trimmed; 0 = at once. Trimming "
        "in every gap between one client's films made each film fault its buffers back in "
        "(reports/bench/load-2026-12-06-dicom-trim).",
    )
    upload_bytes_in_flight: int = Field(
        256 * MIB,
        gt=0,
        description="Upload bytes held at once across all requests (being received or waiting for a "
        "slot); past it 503 + Retry-After. Keep it at least max_upload_bytes.",
    )
    upload_idle_timeout_s: float = Field(
        5.0, gt=0.0, le=300.0, description="An upload that sends nothing for this long: 408 upload_too_slow."
    )
    upload_min_rate_bps: float = Field(
        32 * 1024,
        ge=0.0,
        description="Average upload rate (bytes/s) required once upload_rate_grace_s has passed: 408.",
    )
    upload_rate_grace_s: float = Field(
        5.0, ge=0.0, le=300.0, description="Seconds an upload may take before the minimum rate applies."
    )
    upload_linger_s: float = Field(
        10.0,
        gt=0.0,
        le=300.0,
        description="After an answer given before the body was read (503 overloaded, 413, 408, or any "
        "other, e.g. a 401 to a POST), the "
        "longest the rest of the body is read and dropped so that the client can read the answer "
        "(a lingering close; nginx's lingering_time); CXR_UPLOAD_IDLE_TIMEOUT_S still applies.",
    )
    overlay_max_side: int = Field(512, ge=16, le=4096, description="Longest side of the Grad-CAM PNG.")
    decision_threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Per-deployment override of the card's operating point (binary models only); "
        "reported in every response. Never settable per request.",
    )
    execution_provider: ExecutionProvider = Field(
        "auto",
        description="auto = CUDA when usable, else CPU, reported as a fallback; cuda = refuse to start "
        "without CUDA; tensorrt = TensorRT (CUDA and CPU for the nodes it leaves), refuse to start "
        "without it; cpu = CPU only.",
    )
    trt_cache_dir: Path = Field(
        Path("/tmp/cxr-trt-cache"),
        description="TensorRT engine and timing cache: an engine is built once per model, GPU and batch "
        "profile (minutes) and reused by later starts; mount a volume here to keep it across pods.",
    )
    trt_fp16: bool = Field(True, description="Let TensorRT run layers in fp16 (tensor cores).")
    cudnn_conv_algo_search: Literal["heuristic", "exhaustive", "default"] = Field(
        "heuristic",
        description="How the CUDA provider picks convolution algorithms. exhaustive benchmarks them for "
        "every new input shape, and micro-batches change the batch size from run to run.",
    )
    pad_batches: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Pad every micro-batch to max_batch_size so the graph always sees one input shape; "
        "auto = on for CUDA and TensorRT, where a change of batch size costs far more than the padding "
        "(measured on an H200: about 0.3 s per run for fp32 and 3 s for fp16 with sizes changing, against "
        "under 6 ms for a fixed batch of 32), off for the CPU.",
    )
    io_binding: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Bind inputs and outputs with ONNX Runtime I/O binding; auto = on for CUDA and "
        "TensorRT, off for the CPU (where it saves nothing).",
    )
    # Faults: shutdown drain (reload and provider policy need no settings of their own).
    drain_seconds: float = Field(
        5.0,
        ge=0.0,
        le=300.0,
        description="After SIGTERM: seconds /readyz answers 503 while requests are still served, so the "
        "load balancer stops routing here before the listener closes. Keep it, plus the longest "
        "request, below Kubernetes' terminationGracePeriodSeconds.",
    )
    inference_lanes: int = Field(
        0,
        ge=0,
        le=64,
        description="Micro-batches that may run at once, each on its own thread. 0 = one per CPU (at "
        "most 4) on the CPU provider, one on a GPU (service/inference/lanes.py).",
    )
    intra_op_threads: int = Field(
        0,
        ge=0,
        le=256,
        description="ONNX Runtime intra-op threads per run; 0 = the CPUs this container may use divided "
        "by the lanes (at least 1).",
    )
    ort_spinning: bool = Field(
        False,
        description="Let ONNX Runtime's threads spin (busy-wait) for work, its own default. Off, they "
        "sleep and leave the CPUs to decoding, the event loop and the overlay (reports/bench/load-*).",
    )
    max_concurrent_predictions: int = Field(
        16,
        ge=1,
        le=256,
        description="Predictions holding a slot (decode, waiting for and running the model, overlay; "
        "taken once the upload is complete); others queue. Bounds memory: each holds its decoded "
        "film. Keep it at least max_batch_size, or batches never fill.",
    )
    decode_threads: int = Field(
        0,
        ge=0,
        le=256,
        description="Worker threads decoding films and drawing overlays at once (CPU-bound, and a "
        "large film takes hundreds of MB while decoding); 0 = the CPUs this container may use.",
    )
    # Performance: dynamic micro-batching (service/inference/batching.py).
    max_batch_size: int = Field(
        2,
        ge=1,
        le=256,
        description="Most films per ONNX Runtime run; 1 = no batching. On the CPU a single-threaded lane "
        "runs a film in the same time alone or in a batch, so 2 serves as fast as 4 or 8 with a shorter "
        "tail and less memory (docs/performance.md); a GPU wants more (the Helm chart's GPU values: 16).",
    )
    batch_wait_ms: float = Field(
        0.0,
        ge=0.0,
        le=1000.0,
        description="How long a batch that is not full waits for more films before it runs (with "
        "batch_window=adaptive: the most it may wait). 0 = it runs with the films already queued: no "
        "added latency when idle, and under load films queue while a batch runs, so the next one is "
        "fuller.",
    )
    batch_window: Literal["fixed", "adaptive"] = Field(
        "fixed",
        description="fixed = a batch that is not full waits batch_wait_ms; adaptive = it waits only "
        "when arrivals are frequent enough that the next film is expected within half a run, at most "
        "batch_wait_ms: about 0 when idle, growing with the arrival rate (service/inference/batching.py).",
    )
    # Access control, limits and audit (docs/security.md).
    max_queued: int = Field(
        64,
        ge=0,
        le=1024,
        description="Predictions allowed to wait for a slot with their upload read (its bytes counted "
        "in upload_bytes_in_flight); beyond that 503 + Retry-After at once.",
    )
    request_timeout_s: float = Field(
        30.0,
        gt=0.0,
        le=3600.0,
        description="Deadline of one prediction: queue wait (503), upload (408), decode + inference (504).",
    )
    auth: AuthMode = Field(
        "required",
        description="required = an API key on every route but /healthz and /readyz; disabled = open "
        "to anyone who reaches the port (warned about at start-up).",
    )
    api_keys_file: Path | None = Field(
        None,
        description="'<key_id>:<secret>[:<scope>,...]' per line (a mounted Secret); re-read when it "
        "changes. Required unless CXR_AUTH=disabled.",
    )
    api_keys_reload_s: float = Field(
        1.0, ge=0.0, le=300.0, description="How often, at most, the key file is checked for changes."
    )
    metrics_auth: AuthMode = Field(
        "required",
        description="disabled = /metrics open to anyone who reaches the port (in-cluster scrape); "
        "required = a key with the 'metrics' scope.",
    )
    audit_hash_key_file: Path | None = Field(
        None,
        description="Secret for HMAC-SHA256 of SOP Instance UIDs in the audit log; plain SHA-256 without.",
    )
    host: str = Field("127.0.0.1", min_length=1, description="Bind address; loopback unless opened up.")
    port: int = Field(8000, ge=1, le=65535)
    log_level: LogLevel = "info"

    def decode_limits(self) -> DecodeLimits:
        return DecodeLimits(
            max_pixels=self.max_pixels,
            max_decoded_bytes=self.max_decoded_bytes,
            max_dicom_depth=self.dicom_max_depth,
            max_dicom_elements=self.dicom_max_elements,
            max_dicom_header_bytes=self.dicom_max_header_bytes,
        )

    @field_validator("model_name", "model_version")
    @classmethod
    def _safe_path_component(cls, value: str) -> str:
        if not is_plain_name(value):
            raise ValueError("must be a plain directory name (letters, digits, '.', '_', '-')")
        return value

    @model_validator(mode="after")
    def _something_to_watch(self) -> "Settings":
        if self.model_watch_s == 0:
            return self
        if self.model_watch_s < MIN_WATCH_S:
            raise ValueError(f"CXR_MODEL_WATCH_S must be 0 (off) or at least {MIN_WATCH_S}")
        # A pinned directory or version never changes: watching it would silently do nothing.
        if self.model_dir is not None or self.model_version not in SPECIAL_VERSIONS:
            raise ValueError(
                "CXR_MODEL_WATCH_S > 0 needs CXR_MODEL_VERSION=active or latest and no CXR_MODEL_DIR: "
                "a pinned version has nothing to watch"
            )
        return self

    @field_validator("log_level", "execution_provider", "auth", "metrics_auth", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


def is_plain_name(value: str) -> bool:
    """Whether ``value`` is safe as one path component of the store: no separators, no ".."."""
    return _PATH_COMPONENT.fullmatch(value) is not None and ".." not in value


def unknown_cxr_variables(environ: Mapping[str, str]) -> list[str]:
    """Names of CXR_* variables that match no setting: usually a typo that would go unnoticed."""
    known = {f"CXR_{name.upper()}" for name in Settings.model_fields} | pacs_variable_names()
    return sorted(key for key in environ if key.upper().startswith("CXR_") and key.upper() not in known)


def is_loopback(host: str) -> bool:
    """Whether ``host`` keeps the service on this machine; anything else exposes it to a network."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


# --- the PACS gateway (service/pacs, docs/pacs.md) -------------------------------------------------------
# Read from the same CXR_ environment, in a class of its own: the gateway is optional, and its
# settings validate together (a destination needs a spool, TLS needs both halves).
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
        128 * 1024 * 1024,
        gt=0,
        description="Largest STOW-RS request body; each instance also obeys CXR_MAX_UPLOAD_BYTES, and the "
        "body counts against CXR_UPLOAD_BYTES_IN_FLIGHT (keep this below it).",
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
    """The ``CXR_*`` names ``PacsSettings`` reads."""
    return frozenset(f"CXR_{name.upper()}" for name in PacsSettings.model_fields)
