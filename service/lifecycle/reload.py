"""Hot reload: build a model beside the serving one, verify it as start-up does, swap only on success.

The new ``ModelRuntime`` goes through the same ``ModelRuntime.load`` as start-up (card, sha256,
external data, graph contract, warm-up), on a worker thread, while the old model keeps answering.
The swap is one attribute assignment on the event loop. A request resolves the runtime once, when
it starts, and keeps that object, so in-flight requests finish on the model they started with and
the old session is freed when the last of them returns. On any failure nothing is swapped.
"""

import logging
from functools import partial

import anyio.to_thread

from service.errors import ServiceError
from service.inference.runtime import ModelRuntime
from service.lifecycle.state import AppContext
from service.store.errors import ModelLoadError, ModelNotFoundError

logger = logging.getLogger(__name__)


def swap_runtime(context: AppContext, runtime: ModelRuntime) -> None:
    """Make ``runtime`` the one new requests get, and say so in /metrics."""
    card = runtime.card
    context.metrics.model_loaded(
        card.name,
        card.version,
        runtime.sha256,
        runtime.provider,
        runtime.class_names,
        provider_fallback=runtime.provider_fallback is not None,
    )
    context.runtime = runtime


async def reload_model(
    context: AppContext, version: str | None, trigger: str = "admin request"
) -> tuple[ModelRuntime, ModelRuntime]:
    """``(previous, new)`` after a successful swap; a ``ServiceError`` and no swap otherwise.

    ``trigger`` (who asked: an admin request, the store watcher) only goes into the log lines.
    """
    previous = context.runtime
    if previous is None or context.draining:
        raise ServiceError("not_ready", "The service is starting up or shutting down; not reloading.", 503)
    if context.reloading:
        raise ServiceError(
            "reload_in_progress", "Another reload is in progress; try again when it ends.", 409
        )
    if version is not None and context.settings.model_dir is not None:
        raise ServiceError(
            "version_not_selectable",
            "CXR_MODEL_DIR pins one model directory; reload without a version, or configure "
            "CXR_MODEL_STORE and CXR_MODEL_NAME to choose versions.",
            409,
        )
    context.reloading = True
    try:
        runtime = await anyio.to_thread.run_sync(partial(ModelRuntime.load, context.settings, version))
    except ModelLoadError as exc:
        context.metrics.model_reloads.labels("refused").inc()
        # Our own message (paths, hashes, shapes): safe to log, and the operator needs it.
        logger.warning(
            "model reload refused; the previous model keeps serving: %s",
            exc,
            extra={"model_version": previous.card.version, "trigger": trigger},
        )
        kept = f"{previous.card.name} {previous.card.version}"
        if isinstance(exc, ModelNotFoundError):
            raise ServiceError("model_not_found", f"{exc} Still serving {kept}.", 404) from None
        raise ServiceError("model_rejected", f"{exc} Still serving {kept}.", 422) from None
    finally:
        context.reloading = False
    if context.draining:  # SIGTERM arrived while loading: nothing would ever serve the new model
        raise ServiceError("not_ready", "The service began shutting down during the reload.", 503)
    swap_runtime(context, runtime)
    context.metrics.model_reloads.labels("succeeded").inc()
    logger.info(
        "model reloaded",
        extra={
            "previous_version": previous.card.version,
            "model_name": runtime.card.name,
            "model_version": runtime.card.version,
            "onnx_sha256": runtime.sha256,
            "execution_provider": runtime.provider,
            "trigger": trigger,
        },
    )
    return previous, runtime
