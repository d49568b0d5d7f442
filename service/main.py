"""The FastAPI application factory.

``create_app`` only wires things together; the ONNX Runtime session is created in the lifespan, so
importing this module (or building an app) never touches the model and never imports torch.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import CapacityLimiter
from fastapi import FastAPI

from service import __version__
from service.dependencies import AppContext
from service.errors import install_exception_handlers
from service.metrics import Metrics
from service.middleware import RequestObserver
from service.routes import ALL_ROUTERS
from service.runtime import ModelLoadError, ModelRuntime
from service.settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """A ready-to-serve app; it loads and validates the model when the server starts it."""
    settings = settings if settings is not None else Settings()
    metrics = Metrics()
    context = AppContext(settings=settings, metrics=metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            runtime = ModelRuntime.load(settings)
        except ModelLoadError as exc:
            # Our own message (paths, hashes, shapes): safe to log, and the operator needs it.
            logger.critical("refusing to start: %s", exc)
            raise
        metrics.model_loaded(
            runtime.card.name, runtime.card.version, runtime.sha256, runtime.provider, runtime.class_names
        )
        context.limiter = CapacityLimiter(settings.max_concurrent_predictions)
        context.runtime = runtime
        logger.info(
            "ready",
            extra={"execution_provider": runtime.provider, "max_upload_bytes": settings.max_upload_bytes},
        )
        try:
            yield
        finally:
            context.runtime = None  # /readyz turns 503 while draining

    app = FastAPI(
        title="cxr-triage inference service",
        version=__version__,
        description="Chest X-ray triage: class probabilities and a Grad-CAM overlay for one film. "
        "Decision support only; every film must still be read by a radiologist.",
        lifespan=lifespan,
    )
    app.state.context = context
    install_exception_handlers(app, metrics)
    for router in ALL_ROUTERS:
        app.include_router(router)
    app.add_middleware(RequestObserver, metrics=metrics)
    return app
