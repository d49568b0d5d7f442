"""Per-app state and the typed FastAPI dependencies that hand it to route functions.

State lives on ``app.state.context`` (not in module globals) so several apps - one per test, say -
can run in one process with their own model, settings and metrics registry.
"""

from dataclasses import dataclass
from typing import Annotated, cast

from anyio import CapacityLimiter
from fastapi import Depends, FastAPI, Request

from service.admission import Admission
from service.errors import ServiceError
from service.metrics import Metrics
from service.runtime import ModelRuntime
from service.settings import Settings
from service.upload import UploadBudget


@dataclass
class AppContext:
    settings: Settings
    metrics: Metrics
    runtime: ModelRuntime | None = None  # set by the lifespan once the model is validated and loaded
    limiter: CapacityLimiter | None = None  # worker threads decoding and drawing (memory, CPU)
    admission: Admission | None = None  # slots + bounded queue for predictions, set by the lifespan
    uploads: UploadBudget | None = None  # bytes of uploads held at once, set by the lifespan
    # Faults: set on SIGTERM (/readyz turns 503, requests are still served) and during a hot reload.
    draining: bool = False
    reloading: bool = False


def context_of(app: FastAPI) -> AppContext:
    return cast(AppContext, app.state.context)


# The getters are ``async def`` although they never await: FastAPI runs a plain ``def`` dependency on
# a worker thread, which cost a thread hop per dependency per request (six per prediction).
async def get_context(request: Request) -> AppContext:
    return context_of(request.app)


ContextDep = Annotated[AppContext, Depends(get_context)]


async def get_settings(context: ContextDep) -> Settings:
    return context.settings


async def get_metrics(context: ContextDep) -> Metrics:
    return context.metrics


async def get_runtime(context: ContextDep) -> ModelRuntime:
    if context.runtime is None:
        raise ServiceError("model_not_loaded", "The model is not loaded (starting up or shutting down).", 503)
    return context.runtime


async def get_admission(context: ContextDep) -> Admission:
    if context.admission is None:
        raise ServiceError("model_not_loaded", "The service is not started.", 503)
    return context.admission


async def get_limiter(context: ContextDep) -> CapacityLimiter:
    if context.limiter is None:
        raise ServiceError("model_not_loaded", "The service is not started.", 503)
    return context.limiter


async def get_uploads(context: ContextDep) -> UploadBudget:
    if context.uploads is None:
        raise ServiceError("model_not_loaded", "The service is not started.", 503)
    return context.uploads


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
RuntimeDep = Annotated[ModelRuntime, Depends(get_runtime)]
LimiterDep = Annotated[CapacityLimiter, Depends(get_limiter)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]
UploadsDep = Annotated[UploadBudget, Depends(get_uploads)]
