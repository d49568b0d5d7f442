"""The typed FastAPI dependencies that hand the per-app state (``service.lifecycle.state``) to routes."""

from dataclasses import dataclass
from typing import Annotated, TypeVar, cast

from anyio import CapacityLimiter
from fastapi import Depends, Request

from service.errors import ServiceError
from service.inference.admission import Admission
from service.inference.runtime import ModelRuntime
from service.inference.upload_budget import UploadBudget
from service.lifecycle.state import AppContext, context_of
from service.observability.metrics import Metrics
from service.pacs.gateway import Gateway
from service.settings import Settings

T = TypeVar("T")


# The getters are ``async def`` although they never await: FastAPI runs a plain ``def`` dependency on
# a worker thread, which cost a thread hop per dependency per request (six per prediction).
async def get_context(request: Request) -> AppContext:
    return context_of(request.app)


ContextDep = Annotated[AppContext, Depends(get_context)]


async def get_settings(context: ContextDep) -> Settings:
    return context.settings


async def get_metrics(context: ContextDep) -> Metrics:
    return context.metrics


def _started(part: T | None, detail: str = "The service is not started.") -> T:
    """``part`` of the app state, or 503 model_not_loaded while the lifespan has not set it (or has
    cleared it): the one answer every getter below gives before start-up and after shutdown."""
    if part is None:
        raise ServiceError("model_not_loaded", detail, 503)
    return part


async def get_runtime(context: ContextDep) -> ModelRuntime:
    return _started(context.runtime, "The model is not loaded (starting up or shutting down).")


async def get_admission(context: ContextDep) -> Admission:
    return _started(context.admission)


async def get_limiter(context: ContextDep) -> CapacityLimiter:
    return _started(context.limiter)


async def get_uploads(context: ContextDep) -> UploadBudget:
    return _started(context.uploads)


@dataclass(frozen=True)
class Serving:
    """What a prediction needs of the app state, as one dependency. FastAPI solves each dependency of
    each request apart, on the event loop (four parameter passes and a cache key apiece): with six
    separate ones a prediction took 13 solves and 52 parameter passes (docs/performance.md)."""

    runtime: ModelRuntime
    settings: Settings
    metrics: Metrics
    limiter: CapacityLimiter
    admission: Admission
    uploads: UploadBudget


async def get_serving(context: ContextDep) -> Serving:
    return Serving(
        runtime=await get_runtime(context),
        settings=await get_settings(context),
        metrics=await get_metrics(context),
        limiter=await get_limiter(context),
        admission=await get_admission(context),
        uploads=await get_uploads(context),
    )


ServingDep = Annotated[Serving, Depends(get_serving)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
RuntimeDep = Annotated[ModelRuntime, Depends(get_runtime)]
LimiterDep = Annotated[CapacityLimiter, Depends(get_limiter)]
UploadsDep = Annotated[UploadBudget, Depends(get_uploads)]


async def get_gateway(request: Request) -> Gateway:
    """The PACS gateway (``service.pacs``), set on ``app.state.pacs`` by the lifespan when configured."""
    gateway = getattr(request.app.state, "pacs", None)
    if gateway is None:
        raise ServiceError(
            "pacs_not_configured", "DICOM intake is off: CXR_PACS_SPOOL_DIR is not set, or not started.", 503
        )
    return cast(Gateway, gateway)


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
