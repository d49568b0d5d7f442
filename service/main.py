"""The FastAPI application factory.

``create_app`` only wires things together; the ONNX Runtime session is created in the lifespan, so
importing this module (or building an app) never touches the model and never imports torch.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import CapacityLimiter
from fastapi import FastAPI
from fastapi.routing import APIRoute

from service import __version__
from service.api.error_handlers import install_exception_handlers
from service.api.middleware import RequestObserver
from service.api.routes import ALL_ROUTERS
from service.inference.admission import Admission
from service.inference.cpus import available_cpus
from service.inference.runtime import ModelRuntime
from service.lifecycle.reload import swap_runtime
from service.lifecycle.state import AppContext
from service.lifecycle.store_watch import start_watching, stop_watching
from service.observability.audit import UidHasher
from service.observability.metrics import Metrics
from service.security.access import AccessGuard, AccessPolicy
from service.settings import Settings
from service.store.errors import ModelLoadError

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """A ready-to-serve app; it loads and validates the model when the server starts it."""
    settings = settings if settings is not None else Settings()
    # Both read their files now: a missing key file stops the process before it listens.
    access = AccessPolicy.from_settings(settings)  # AccessConfigError
    uid_hasher = UidHasher.from_file(settings.audit_hash_key_file)  # AuditKeyError
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
        decode_threads = settings.decode_threads or available_cpus()
        context.limiter = CapacityLimiter(decode_threads)
        context.admission = Admission(settings.max_concurrent_predictions, settings.max_queued, metrics)
        _log_access(access)
        swap_runtime(context, runtime)
        logger.info(
            "ready",
            extra={
                "execution_provider": runtime.provider,
                "intra_op_threads": runtime.intra_op_threads,
                "decode_threads": decode_threads,
                "max_batch_size": settings.max_batch_size,
                "batch_wait_ms": settings.batch_wait_ms,
                "max_concurrent_predictions": settings.max_concurrent_predictions,
                "max_upload_bytes": settings.max_upload_bytes,
            },
        )
        watcher = start_watching(context)  # None unless CXR_MODEL_WATCH_S > 0
        try:
            yield
        finally:
            await stop_watching(watcher)  # before the runtime goes: a reload must not land after it
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
    # Added first = runs inside: the observer sees (and audits) the guard's 401/403 answers too.
    app.add_middleware(AccessGuard, policy=access, metrics=metrics)
    known_paths = {
        route.path for router in ALL_ROUTERS for route in router.routes if isinstance(route, APIRoute)
    }
    known_paths |= {url for url in (app.openapi_url, app.docs_url, app.redoc_url) if url}
    app.add_middleware(RequestObserver, metrics=metrics, uid_hasher=uid_hasher, known_paths=known_paths)
    return app


def _log_access(access: AccessPolicy) -> None:
    if access.keys is None:
        logger.warning(
            "AUTHENTICATION DISABLED (CXR_AUTH=disabled): every route, predictions and admin included, "
            "is open to anyone who can reach this port"
        )
        return
    logger.info(
        "API key authentication on",
        extra={"key_ids": access.keys.key_ids, "metrics_open": access.metrics_open},
    )
