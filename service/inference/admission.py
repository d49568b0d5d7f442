"""Admission control for predictions: a bounded queue in front of the slots, and one deadline each.

A prediction takes a slot once its body is complete (reading it is waiting on the network, bounded
by its own budget: ``service.api.upload``, ``upload_budget``) and keeps it through decode and
inference, so at most ``max_concurrent_predictions`` decoded films are in memory at once. Up to
``max_queued`` more wait holding their upload (counted in ``CXR_UPLOAD_BYTES_IN_FLIGHT``);
anything beyond is answered 503 with ``Retry-After`` at once.

The deadline (``CXR_REQUEST_TIMEOUT_S``) runs from arrival and covers every step. Running out:
- while queued: 503 ``overloaded`` + Retry-After (nothing was started; safe to retry);
- while the upload is read: 408 ``request_timeout`` and the connection is closed (a trickling
  client is usually cut off sooner, by the upload's minimum rate: 408 ``upload_too_slow``); it never
  held a slot, so the others never waited on it;
- during decode and inference: 504 ``deadline_exceeded``. Those run on a worker thread that cannot
  be interrupted, so the answer comes when the thread returns; the slot is held until then, which
  keeps the memory bound true.

``on_idle`` (the heap trim, ``service.inference.memory``) runs once the service has stayed idle -
no prediction running or queued - for ``idle_delay_s``: a client sending films one after another
leaves the service idle between each answer and its next upload, and trimming in every such gap
made each film fault its buffers back in (2048 px DICOMs one at a time: 16.7 img/s trimming at
once, 30.2 without trimming; docs/limits.md).
"""

import asyncio
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

    def __init__(
        self,
        running: int,
        queued: int,
        metrics: Metrics,
        on_idle: Callable[[], object] | None = None,
        idle_delay_s: float = 0.0,
    ) -> None:
        self._slots = anyio.Semaphore(running)
        self._max_waiting = queued
        self._waiting = 0
        self._running = 0
        self._metrics = metrics
        # Sync, run on a worker thread once no prediction has run or waited for idle_delay_s.
        self._on_idle = on_idle
        self._idle_delay_s = idle_delay_s
        self._idle_timer: asyncio.TimerHandle | None = None
        self._idle_task: set[object] = set()

    @asynccontextmanager
    async def slot(self, deadline: Deadline) -> AsyncIterator[None]:
        self._cancel_idle_timer()
        try:
            # A free slot means nobody is queued: the semaphore hands releases to waiters first.
            self._slots.acquire_nowait()
        except anyio.WouldBlock:
            await self._wait(deadline)
        self._metrics.admission_running.inc()
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1
            self._metrics.admission_running.dec()
            self._slots.release()
            if self._idle() and self._on_idle is not None:
                self._went_idle()

    def _idle(self) -> bool:
        return self._running == 0 and self._waiting == 0

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _went_idle(self) -> None:
        self._cancel_idle_timer()
        if self._idle_delay_s <= 0:
            self._run_on_idle()
        else:
            self._idle_timer = asyncio.get_running_loop().call_later(self._idle_delay_s, self._stayed_idle)

    def _stayed_idle(self) -> None:
        self._idle_timer = None
        if self._idle():
            self._run_on_idle()

    def _run_on_idle(self) -> None:
        """Run ``on_idle`` on a worker thread, once at a time, without making anyone wait for it."""
        on_idle = self._on_idle
        if on_idle is None or self._idle_task:
            return
        future = asyncio.get_running_loop().run_in_executor(None, on_idle)
        self._idle_task.add(future)
        future.add_done_callback(self._idle_task.discard)

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
