"""Service configuration: one ``Settings`` object read from ``CXR_*`` environment variables.

Every field is validated when the object is built, so a typo'd port or a negative limit stops the
process before it binds a socket instead of surfacing on the first request.
"""

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024
LATEST = "latest"
# Model names and versions become path components under the store: no separators, no "..".
_PATH_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

LogLevel = Literal["critical", "error", "warning", "info", "debug"]
ExecutionProvider = Literal["auto", "cuda", "cpu"]


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
        description="Version directory, or 'latest' = last sorted version dir that has a model_card.json.",
    )
    model_dir: Path | None = Field(
        None, description="Explicit version directory; overrides model_store/model_name/model_version."
    )
    max_upload_bytes: int = Field(32 * MIB, gt=0, description="Largest accepted file, in bytes.")
    max_pixels: int = Field(50_000_000, gt=0, description="Largest accepted image, width x height.")
    overlay_max_side: int = Field(512, ge=16, le=4096, description="Longest side of the Grad-CAM PNG.")
    decision_threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Per-deployment override of the card's operating point (binary models only); "
        "reported in every response. Never settable per request.",
    )
    execution_provider: ExecutionProvider = "auto"
    intra_op_threads: int = Field(0, ge=0, le=256, description="ONNX Runtime intra-op threads; 0 = default.")
    max_concurrent_predictions: int = Field(
        2,
        ge=1,
        le=64,
        description="Predictions decoded/run at once; others wait. Bounds memory: one film can take "
        "several hundred MB while decoding.",
    )
    host: str = Field("127.0.0.1", min_length=1, description="Bind address; loopback unless opened up.")
    port: int = Field(8000, ge=1, le=65535)
    log_level: LogLevel = "info"

    @field_validator("model_name", "model_version")
    @classmethod
    def _safe_path_component(cls, value: str) -> str:
        if not _PATH_COMPONENT.fullmatch(value) or ".." in value:
            raise ValueError("must be a plain directory name (letters, digits, '.', '_', '-')")
        return value

    @field_validator("log_level", "execution_provider", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


def unknown_cxr_variables(environ: Mapping[str, str]) -> list[str]:
    """Names of CXR_* variables that match no setting: usually a typo that would go unnoticed."""
    known = {f"CXR_{name.upper()}" for name in Settings.model_fields}
    return sorted(key for key in environ if key.upper().startswith("CXR_") and key.upper() not in known)
