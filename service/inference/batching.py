"""Dynamic micro-batching: films from concurrent requests share one ONNX Runtime run.

Worker threads (``lanes`` of them at most, one per batch that may run at once) own ``session.run``.
A request hands its preprocessed film to ``submit`` and gets a future. A free worker takes the oldest
film, then every film already queued, up to ``max_batch``; when that is fewer, it may wait for more
(the batch window), then runs them as one batch and hands each request its own row. Under load,
films queue while batches run and the next batch is fuller. Another lane starts only when films
wait and every running lane is busy, so an idle service runs one.

Why lanes: on the CPU, one run with every core as an ONNX Runtime thread waits at each layer for its
slowest thread, and any Python work (HTTP, decoding) that takes a core from it stalls all of them.
One single-threaded run per core has no such barrier; ORT sessions allow concurrent runs
(service/inference/lanes.py).

The window is ``fixed`` (always up to ``max_wait_s``) or ``adaptive``: it follows the arrival rate.
The worker keeps a moving average of the gap between arrivals and of its own run time; a batch that
is not full waits only when the next film is expected within half a run (and ``max_wait_s``), and
then no longer than the films still missing are expected to take. So an idle service, whose gaps
are long, runs a film at once, and the window opens as traffic grows.

Errors stay per request. When a batch fails inside ONNX Runtime, each of its films is re-run alone,
so only the film that makes the model fail gets the error. A row whose outputs fail their checks
fails only its own request.

The worker thread exits after ``idle_s`` without work and is started again by the next ``submit``.
So a model replaced by a hot reload leaves no thread behind, and its session is freed once its
last request has returned.
"""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

from service.observability.threads import LANE_THREAD, name_os_thread

logger = logging.getLogger(__name__)

Film = npt.NDArray[np.float32]  # one preprocessed film [1, H, W]; a batch stacks them [N, 1, H, W]
R = TypeVar("R")


# Adaptive window: the share of a run a batch may wait for the next film (the latency it may add),
# and the weight of the newest sample in the moving averages of arrival gap and run time.
ADAPTIVE_RUN_SHARE = 0.5
_EWMA_WEIGHT = 0.2


@dataclass(frozen=True)
class BatchPolicy:
    max_batch: int = 8  # 1 = no batching: one film per session.run
    max_wait_s: float = 0.0  # fixed: the window; adaptive: its ceiling
    idle_s: float = 5.0
    adaptive: bool = False
    lanes: int = 1  # batches that may run at once, each on its own worker thread


@dataclass
class _Job(Generic[R]):
    film: Film
    future: "Future[R]"


class MicroBatcher(Generic[R]):
    """Collects films into batches for ``run_batch`` on up to ``lanes`` worker threads. Thread-safe."""

    def __init__(self, run_batch: Callable[[Film], Sequence[R | Exception]], policy: BatchPolicy) -> None:
        """``run_batch`` runs a batch [N, 1, H, W] and returns one result or one exception per film, in
        order; raising means the whole run failed (each film is then retried alone)."""
        if policy.max_batch < 1 or policy.max_wait_s < 0 or policy.idle_s <= 0 or policy.lanes < 1:
            raise ValueError(f"invalid batch policy {policy}")
        self._run_batch = run_batch
        self._policy = policy
        self._queue: deque[_Job[R]] = deque()
        self._cond = threading.Condition()
        self._workers = 0  # worker threads alive
        self._busy = 0  # of those, running a batch (the others wait for films or fill a window)
        # Moving averages for the adaptive window (seconds); None until first measured.
        self._last_arrival: float | None = None
        self._gap: float | None = None
        self._run_s: float | None = None

    @property
    def policy(self) -> BatchPolicy:
        return self._policy

    def submit(self, film: Film) -> "Future[R]":
        """Queue one film; the future resolves to its result, or raises its error."""
        job: _Job[R] = _Job(np.ascontiguousarray(film, dtype=np.float32), Future())
        with self._cond:
            now = time.monotonic()
            if self._last_arrival is not None:
                self._gap = _ewma(self._gap, now - self._last_arrival)
            self._last_arrival = now
            self._queue.append(job)
            self._add_lane_if_all_busy()
            self._cond.notify()
        return job.future

    def _work(self) -> None:
        name_os_thread(LANE_THREAD)
        while (jobs := self._next_batch()) is not None:
            try:
                self._run(jobs)
            except Exception as exc:  # a bug here must not leave requests waiting forever
                logger.exception("micro-batcher failed")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
            finally:
                with self._cond:
                    self._busy -= 1

    def _next_batch(self) -> list[_Job[R]] | None:
        """The next batch, or None once the queue stayed empty for ``idle_s`` (the thread then ends)."""
        policy = self._policy
        with self._cond:
            idle_until = time.monotonic() + policy.idle_s
            while not self._queue:
                remaining = idle_until - time.monotonic()
                if remaining <= 0:
                    self._workers -= 1  # under the lock: the next submit starts a new thread
                    return None
                self._cond.wait(remaining)
            window = self._window(len(self._queue)) if len(self._queue) < policy.max_batch else 0.0
            if window > 0:
                fill_until = time.monotonic() + window
                while len(self._queue) < policy.max_batch:
                    remaining = fill_until - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            jobs: list[_Job[R]] = []
            while self._queue and len(jobs) < policy.max_batch:
                job = self._queue.popleft()
                # False when the request gave up (deadline, disconnect) while queued: skip its film.
                if job.future.set_running_or_notify_cancel():
                    jobs.append(job)
            self._busy += 1
            if self._queue:  # films left behind, and this lane is now busy too
                self._add_lane_if_all_busy()
            return jobs

    def _add_lane_if_all_busy(self) -> None:
        """Start a worker when every live one is running a batch and lanes are left (lock held)."""
        if self._busy == self._workers < self._policy.lanes:
            self._workers += 1
            threading.Thread(target=self._work, name=LANE_THREAD, daemon=True).start()

    def window_s(self, queued: int) -> float:
        """How long a batch of ``queued`` films (fewer than ``max_batch``) waits for more now."""
        with self._cond:
            return self._window(queued)

    def _window(self, queued: int) -> float:
        policy = self._policy
        if not policy.adaptive or policy.max_wait_s <= 0:
            return policy.max_wait_s
        gap, run_s = self._gap, self._run_s
        if gap is None or run_s is None:
            return 0.0  # nothing measured yet: no reason to expect company
        # Waiting pays when the films it gathers would otherwise each need a run of their own; it
        # is bounded by a share of one run, so it never adds more latency than that.
        budget = min(policy.max_wait_s, ADAPTIVE_RUN_SHARE * run_s)
        if gap > budget:
            return 0.0  # the next film is not expected in time (idle, or a trickle): run now
        return min(budget, (policy.max_batch - queued) * gap)

    def _run(self, jobs: list[_Job[R]]) -> None:
        if not jobs:
            return
        started = time.monotonic()
        try:
            results = self._run_batch(np.stack([job.film for job in jobs]))
        except Exception as exc:
            if len(jobs) == 1:
                jobs[0].future.set_exception(exc)
                return
            # One film may be what makes the run fail; re-run each alone so only its request fails.
            logger.warning(
                "batch of %d failed (%s); re-running its films one by one", len(jobs), type(exc).__name__
            )
            for job in jobs:
                self._run_alone(job)
            return
        with self._cond:
            self._run_s = _ewma(self._run_s, time.monotonic() - started)
        if len(results) != len(jobs):
            raise ValueError(f"a batch of {len(jobs)} films returned {len(results)} results")
        for job, result in zip(jobs, results, strict=True):
            _resolve(job.future, result)

    def _run_alone(self, job: _Job[R]) -> None:
        try:
            (result,) = self._run_batch(job.film[np.newaxis])
        except Exception as exc:
            job.future.set_exception(exc)
            return
        _resolve(job.future, result)


def _ewma(average: float | None, sample: float) -> float:
    return sample if average is None else average + _EWMA_WEIGHT * (sample - average)


def _resolve(future: "Future[R]", result: "R | Exception") -> None:
    if isinstance(result, Exception):
        future.set_exception(result)
    else:
        future.set_result(result)
