"""Store watching: follow the ACTIVE pointer (or the latest version) without a restart or a request.

With ``CXR_MODEL_WATCH_S`` > 0 a background task of the app resolves ``CXR_MODEL_VERSION`` (``active``
or ``latest``) every that many seconds. When the answer differs from the one it last acted on, it
runs the admin endpoint's reload (``service.lifecycle.reload.reload_model``): the same checks, the same atomic
swap, the same metrics and log lines. So several replicas on one store follow a published version
within one poll of each other, and a refused version is logged and counted once, when it appears,
not at every poll, while the serving model stays.

It stops when the app drains (SIGTERM) and is cancelled when the app shuts down.
"""

import asyncio
import contextlib
import logging
from functools import partial

import anyio
import anyio.to_thread

from service.errors import ServiceError
from service.lifecycle.reload import reload_model
from service.lifecycle.state import AppContext
from service.settings import Settings
from service.store.errors import ModelLoadError
from service.store.resolve import resolve_model_dir

logger = logging.getLogger(__name__)


def start_watching(context: AppContext) -> "asyncio.Task[None] | None":
    """The watcher task when CXR_MODEL_WATCH_S asks for one (call from the lifespan), else None."""
    settings = context.settings
    if settings.model_watch_s <= 0:
        return None
    logger.info(
        "watching the model store for a new version",
        extra={
            "model_store": str(settings.model_store),
            "model_name": settings.model_name,
            "model_version": settings.model_version,
            "interval_s": settings.model_watch_s,
        },
    )
    return asyncio.get_running_loop().create_task(watch_store(context), name="cxr-store-watch")


async def stop_watching(task: "asyncio.Task[None] | None") -> None:
    """Cancel the watcher and wait for it; a reload it had started finishes first (its thread is not
    interruptible), so no load is left running behind a stopped app."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def watch_store(context: AppContext) -> None:
    settings = context.settings
    acted_on = str(context.runtime.model_dir) if context.runtime is not None else ""
    while not context.draining:
        await anyio.sleep(settings.model_watch_s)
        if context.draining:
            break
        target, version = await anyio.to_thread.run_sync(partial(_target, settings))
        if target == acted_on:
            continue
        serving = context.runtime
        if serving is not None and target == str(serving.model_dir):
            acted_on = target  # an admin reload got there first
            continue
        try:
            await reload_model(context, version, trigger="store watch")
        except ServiceError as exc:
            if exc.status == 409:  # an admin reload is running: look again at the next poll
                continue
            if exc.status == 503:  # draining: nothing would serve a new model
                break
            # Refused (404/422): reload_model has logged and counted it. Remembering the target
            # below keeps the same fault from being retried, logged and counted at every poll.
        except Exception:
            # A bug must not end watching silently, nor fill the log at every poll: once per target.
            logger.exception("store watch could not reload; the previous model keeps serving")
        acted_on = target
    logger.info("store watch stopped")


def _target(settings: Settings) -> tuple[str, str | None]:
    """What the configured version resolves to now: ``(key, version)``.

    ``key`` identifies the answer, a fault included, so each distinct one is acted on once;
    ``version`` is the folder to reload, or None for a fault (the reload then meets it again and
    reports it, exactly as ``POST /v1/admin/reload`` would).
    """
    try:
        model_dir = resolve_model_dir(settings)
    except (ModelLoadError, OSError) as exc:
        return f"unresolvable: {exc}", None
    return str(model_dir), model_dir.name
