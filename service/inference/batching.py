"""Dynamic micro-batching: films from concurrent requests share one ONNX Runtime run.

One worker thread per model owns ``session.run``. A request hands its preprocessed film to
``submit`` and gets a future. The worker takes the oldest film, then every film already queued, up
to ``max_batch``; when that is fewer, it waits up to ``max_wait_s`` for more, then runs them as one
batch and hands each request its own row. At low load a film runs alone at once (plus at most
``max_wait_s``); under load, films queue while a batch runs and the next batch is fuller.

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

logger = logging.getLogger(__name__)

Film = npt.NDArray[np.float32]  # one preprocessed film [1, H, W]; a batch stacks them [N, 1, H, W]
R = TypeVar("R")


@dataclass(frozen=True)
class BatchPolicy:
    max_batch: int = 8  # 1 = no batching: one film per session.run
    max_wait_s: float = 0.0
    idle_s: float = 5.0


@dataclass
class _Job(Generic[R]):
    film: Film
    future: "Future[R]"


class MicroBatcher(Generic[R]):
    """Collects films into batches for ``run_batch`` on one worker thread. Thread-safe."""

    def __init__(self, run_batch: Callable[[Film], Sequence[R | Exception]], policy: BatchPolicy) -> None:
        """``run_batch`` runs a batch [N, 1, H, W] and returns one result or one exception per film, in
        order; raising means the whole run failed (each film is then retried alone)."""
        if policy.max_batch < 1 or policy.max_wait_s < 0 or policy.idle_s <= 0:
            raise ValueError(f"invalid batch policy {policy}")
        self._run_batch = run_batch
        self._policy = policy
        self._queue: deque[_Job[R]] = deque()
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None

    @property
    def policy(self) -> BatchPolicy:
        return self._policy

    def submit(self, film: Film) -> "Future[R]":
        """Queue one film; the future resolves to its result, or raises its error."""
        job: _Job[R] = _Job(np.ascontiguousarray(film, dtype=np.float32), Future())
        with self._cond:
            self._queue.append(job)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="cxr-batcher", daemon=True)
                self._worker.start()
            self._cond.notify()
        return job.future

    def _work(self) -> None:
        while (jobs := self._next_batch()) is not None:
            try:
                self._run(jobs)
            except Exception as exc:  # a bug here must not leave requests waiting forever
                logger.exception("micro-batcher failed")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)

    def _next_batch(self) -> list[_Job[R]] | None:
        """The next batch, or None once the queue stayed empty for ``idle_s`` (the thread then ends)."""
        policy = self._policy
        with self._cond:
            idle_until = time.monotonic() + policy.idle_s
            while not self._queue:
                remaining = idle_until - time.monotonic()
                if remaining <= 0:
                    self._worker = None  # under the lock: the next submit starts a new thread
                    return None
                self._cond.wait(remaining)
            if len(self._queue) < policy.max_batch and policy.max_wait_s > 0:
                fill_until = time.monotonic() + policy.max_wait_s
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
            return jobs

    def _run(self, jobs: list[_Job[R]]) -> None:
        if not jobs:
            return
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


def _resolve(future: "Future[R]", result: "R | Exception") -> None:
    if isinstance(result, Exception):
        future.set_exception(result)
    else:
        future.set_result(result)
