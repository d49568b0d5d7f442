"""The per-app state every layer above inference shares: settings, metrics, the serving runtime.

State lives on ``app.state.context`` (not in module globals) so several apps - one per test, say -
can run in one process with their own model, settings and metrics registry.
"""

from dataclasses import dataclass
from typing import cast

from anyio import CapacityLimiter
from fastapi import FastAPI

from service.inference.admission import Admission
from service.inference.runtime import ModelRuntime
from service.inference.upload_budget import UploadBudget
from service.observability.metrics import Metrics
from service.settings import Settings


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
