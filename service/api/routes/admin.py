"""Operator actions under ``/v1/admin`` (access control protects the whole prefix): model hot reload."""

from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.api.dependencies import ContextDep
from service.api.schemas import ErrorResponse, ModelRef, ProviderFallback, ReloadResult
from service.lifecycle.reload import reload_model

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str | None = Field(
        None,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Version directory under CXR_MODEL_STORE/CXR_MODEL_NAME, 'latest', or 'active' "
        "(the version the store's ACTIVE pointer names now). Omitted: the configured "
        "CXR_MODEL_VERSION (or CXR_MODEL_DIR) is resolved again - so 'active' re-reads the pointer "
        "- and verified again.",
        examples=["6"],
    )

    @field_validator("version")
    @classmethod
    def _no_parent(cls, value: str | None) -> str | None:
        if value is not None and ".." in value:
            raise ValueError("must be a plain directory name")
        return value


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "bad_request: the body is not valid JSON"},
    404: {"model": ErrorResponse, "description": "model_not_found: no such version in the store"},
    409: {"model": ErrorResponse, "description": "reload_in_progress, version_not_selectable"},
    422: {
        "model": ErrorResponse,
        "description": "model_rejected: the version failed verification (sha256, external data, "
        "graph/card contract, warm-up); invalid_request",
    },
    503: {"model": ErrorResponse, "description": "not_ready: starting up or draining"},
}


@router.post(
    "/reload",
    response_model=ReloadResult,
    responses=_ERRORS,
    summary="Load a model version, verify it as start-up does, and swap it in only if it passes",
)
async def reload(
    context: ContextDep, request: Annotated[ReloadRequest | None, Body()] = None
) -> ReloadResult:
    version = request.version if request is not None else None
    previous, runtime = await reload_model(context, version)
    return ReloadResult(
        status="reloaded",
        model=ModelRef(name=runtime.card.name, version=runtime.card.version),
        previous=ModelRef(name=previous.card.name, version=previous.card.version),
        onnx_sha256=runtime.sha256,
        execution_provider=runtime.provider,
        provider_fallback=ProviderFallback.from_reason(runtime.provider_fallback),
    )
