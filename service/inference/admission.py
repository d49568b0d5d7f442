"""Admission control for predictions: a bounded queue in front of the slots, and one deadline each.

A prediction takes a slot *before* its body is read and keeps it through decode and inference, so
at most ``max_concurrent_predictions`` uploads and decoded films are in memory at once. Up to
``max_queued`` more wait holding nothing but their connection; anything beyond is answered 503 with
``Retry-After`` at once, so a burst costs a few bytes per refused request, never a film.

The deadline (``CXR_REQUEST_TIMEOUT_S``) runs from arrival and covers every step. Running out:
- while queued: 503 ``overloaded`` + Retry-After (nothing was started; safe to retry);
- while the upload is read: 408 ``request_timeout`` and the connection is closed - a client
  trickling its body loses its slot, and the others never wait on it;
- during decode and inference: 504 ``deadline_exceeded``. Those run on a worker thread that cannot
  be interrupted, so the answer comes when the thread returns; the slot is held until then, which
  keeps the memory bound true.
"""

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio

from service.errors import ServiceError
from service.observability.metrics import Metrics

RETRY_AFTER_S = 1  # slots free up in about one inference time; clients should add jitter


def _overloaded(detail: str) -> ServiceError:
    return ServiceError("overloaded", detail, 503, headers={"Retry-After": str(RETRY_AFTER_S)})


def queue_full() -> ServiceError:
    return _overloaded("Too many predictions in progress and queued; retry after the Retry-After delay.")


def queue_timeout() -> ServiceError:
    return _overloaded("The request waited for a free slot until its deadline; nothing was processed.")


def upload_timeout() -> ServiceError:
    return ServiceError(
        "request_timeout",
        "The upload did not arrive within the request deadline (CXR_REQUEST_TIMEOUT_S).",
        408,
        headers={"Connection": "close"},
    )


def processing_timeout() -> ServiceError:
    return ServiceError(
        "deadline_exceeded",
        "Decoding and analysing the film took longer than the request deadline (CXR_REQUEST_TIMEOUT_S).",
        504,
    )


class Deadline:
    """One time budget for a whole request; each step says which error running out during it means."""

    def __init__(self, seconds: float, metrics: Metrics) -> None:
        self.expires_at = anyio.current_time() + seconds
        self._metrics = metrics

    @contextmanager
    def step(self, name: str, error: Callable[[], ServiceError]) -> Iterator[None]:
        """Cancel the awaits inside at the deadline; a step that ends after it fails all the same."""
        with anyio.CancelScope(deadline=self.expires_at) as scope:
            yield
        # Work on a worker thread is not interruptible: it returns late instead of being cancelled.
        if scope.cancelled_caught or anyio.current_time() >= self.expires_at:
            self._metrics.deadline_exceeded.labels(name).inc()
            raise error()


class Admission:
    """At most ``running`` requests hold a slot and ``queued`` wait for one; the rest get 503 at once."""

    def __init__(self, running: int, queued: int, metrics: Metrics) -> None:
        self._slots = anyio.Semaphore(running)
        self._max_waiting = queued
        self._waiting = 0
        self._metrics = metrics

    @asynccontextmanager
    async def slot(self, deadline: Deadline) -> AsyncIterator[None]:
        try:
            # A free slot means nobody is queued: the semaphore hands releases to waiters first.
            self._slots.acquire_nowait()
        except anyio.WouldBlock:
            await self._wait(deadline)
        self._metrics.admission_running.inc()
        try:
            yield
        finally:
            self._metrics.admission_running.dec()
            self._slots.release()

    async def _wait(self, deadline: Deadline) -> None:
        if self._waiting >= self._max_waiting:
            self._metrics.admission_rejected.inc()
            raise queue_full()
        self._waiting += 1
        self._metrics.admission_waiting.set(self._waiting)
        acquired = False
        try:
            with deadline.step("queue", queue_timeout):
                await self._slots.acquire()
                acquired = True
        except ServiceError:
            if acquired:  # got the slot just as the deadline passed: hand it on, answer 503
                self._slots.release()
            raise
        finally:
            self._waiting -= 1
            self._metrics.admission_waiting.set(self._waiting)
