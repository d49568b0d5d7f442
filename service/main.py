"""The FastAPI application factory.

``create_app`` only wires things together; the ONNX Runtime session is created in the lifespan, so
importing this module (or building an app) never touches the model and never imports torch.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import FastAPI
from fastapi.routing import APIRoute

from service import __version__
from service.api.docs_headers import DocsHeaders
from service.api.error_handlers import install_exception_handlers
from service.api.middleware import RequestObserver
from service.api.routes import ALL_ROUTERS, PACS_ROUTERS
from service.inference.admission import Admission
from service.inference.cpus import available_cpus
from service.inference.memory import trim_heap
from service.inference.runtime import ModelRuntime
from service.inference.upload_budget import UploadBudget
from service.lifecycle.reload import swap_runtime
from service.lifecycle.state import AppContext
from service.lifecycle.store_watch import start_watching, stop_watching
from service.observability.audit import UidHasher
from service.observability.metrics import Metrics
from service.pacs.gateway import Gateway, start_gateway
from service.pacs.workers import FilmLimits
from service.security.access import AccessGuard, AccessPolicy
from service.settings import PacsSettings, Settings
from service.store.errors import ModelLoadError

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, pacs_settings: PacsSettings | None = None) -> FastAPI:
    """A ready-to-serve app; it loads and validates the model when the server starts it."""
    settings = settings if settings is not None else Settings()
    pacs_settings = pacs_settings if pacs_settings is not None else PacsSettings()
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
        on_idle = trim_heap if settings.trim_heap_when_idle else None
        context.admission = Admission(
            settings.max_concurrent_predictions,
            settings.max_queued,
            metrics,
            on_idle=on_idle,
            idle_delay_s=settings.trim_heap_idle_s,
        )
        context.uploads = UploadBudget(settings.upload_bytes_in_flight, metrics)
        _log_access(access)
        swap_runtime(context, runtime)
        logger.info(
            "ready",
            extra={
                "execution_provider": runtime.provider,
                "intra_op_threads": runtime.intra_op_threads,
                "inference_lanes": runtime.lanes,
                "decode_threads": decode_threads,
                "max_batch_size": settings.max_batch_size,
                "batch_wait_ms": settings.batch_wait_ms,
                "batch_window": settings.batch_window,
                "max_concurrent_predictions": settings.max_concurrent_predictions,
                "max_upload_bytes": settings.max_upload_bytes,
            },
        )
        watcher = start_watching(context)  # None unless CXR_MODEL_WATCH_S > 0
        # DICOM intake and the job queue (service/pacs); None unless CXR_PACS_SPOOL_DIR is set.
        app.state.pacs = _start_pacs(pacs_settings, settings, context, metrics, uid_hasher)
        try:
            yield
        finally:
            gateway: Gateway | None = app.state.pacs
            app.state.pacs = None
            if gateway is not None:  # before the runtime goes: films in flight resume at the next start
                await anyio.to_thread.run_sync(gateway.stop)
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
    app.state.pacs = None
    install_exception_handlers(app, metrics)
    # The DICOMweb and worklist routes exist only where the PACS gateway is configured.
    routers = (*ALL_ROUTERS, *(PACS_ROUTERS if pacs_settings.enabled else ()))
    for router in routers:
        app.include_router(router)
    # Added first = runs inside: the observer sees (and audits) the guard's 401/403 answers too.
    app.add_middleware(AccessGuard, policy=access, metrics=metrics)
    known_paths = {route.path for router in routers for route in router.routes if isinstance(route, APIRoute)}
    known_paths |= {url for url in (app.openapi_url, app.docs_url, app.redoc_url) if url}
    docs_paths = {url for url in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if url}
    app.add_middleware(DocsHeaders, paths=docs_paths)
    app.add_middleware(RequestObserver, metrics=metrics, uid_hasher=uid_hasher, known_paths=known_paths)
    return app


def _start_pacs(
    pacs_settings: PacsSettings, settings: Settings, context: AppContext, metrics: Metrics, hasher: UidHasher
) -> Gateway | None:
    if not pacs_settings.enabled:
        return None
    limits = FilmLimits(max_pixels=settings.max_pixels, overlay_max_side=settings.overlay_max_side)
    return start_gateway(pacs_settings, limits, lambda: context.runtime, metrics.registry, hasher)


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
