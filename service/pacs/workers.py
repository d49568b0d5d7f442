"""The threads that drain the queue: triage workers, one delivery loop (with retention sweeps).

Threads, not asyncio tasks: the SCP hands work over from its own threads, triage blocks on decoding
and on the model's micro-batch, and delivery blocks on the network. Each loop takes its next step
from the job table, so a restart simply resumes where the table says.
"""

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from service.contract import InputError
from service.inference.runtime import ModelRuntime
from service.observability.audit import UidHasher
from service.pacs.delivery import Destination, Parcel
from service.pacs.intake import Intake
from service.pacs.jobs import DEAD, Job, JobTable, TriageResult
from service.pacs.metrics import PacsMetrics
from service.pacs.spool import Spool
from service.pacs.triage import triage_film
from service.settings import PacsSettings

logger = logging.getLogger(__name__)
_DELIVERY_ROUND = 64  # jobs per delivery round (one association for all of them)
_SWEEP_EVERY_S = 60.0


@dataclass(frozen=True)
class FilmLimits:
    max_pixels: int
    overlay_max_side: int


class Workers:
    def __init__(
        self,
        settings: PacsSettings,
        *,
        limits: FilmLimits,
        intake: Intake,
        destinations: Sequence[Destination],
        runtime: Callable[[], ModelRuntime | None],
        metrics: PacsMetrics,
        hasher: UidHasher,
    ) -> None:
        self.settings = settings
        self.limits = limits
        self.intake = intake
        self.jobs: JobTable = intake.jobs
        self.spool: Spool = intake.spool
        self.destinations = list(destinations)
        self.runtime = runtime
        self.metrics = metrics
        self.hasher = hasher
        self._stop = threading.Event()
        self._triaged = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for index in range(self.settings.pacs_workers):
            self._spawn(f"pacs-triage-{index}", self._triage_loop)
        self._spawn("pacs-delivery", self._delivery_loop)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask every loop to stop after its current step; a film cut off mid-triage resumes at restart."""
        self._stop.set()
        self.intake.queued.set()
        self._triaged.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    # --- triage -------------------------------------------------------------------------------------
    def _triage_loop(self) -> None:
        while not self._stop.is_set():
            try:
                runtime = self.runtime()
                job = self.jobs.claim() if runtime is not None else None
                if job is None or runtime is None:
                    self.intake.queued.wait(self.settings.pacs_poll_s)
                    self.intake.queued.clear()
                    continue
                self._triage(job, runtime)
            except Exception:  # the table itself failed (disk?): keep the thread, try again later
                logger.exception("triage loop error")
                self._stop.wait(self.settings.pacs_poll_s)

    def _triage(self, job: Job, runtime: ModelRuntime) -> None:
        tag = self.hasher(job.sop_instance_uid)
        try:
            if job.spool_name is None:
                raise InputError("spool_file_missing", "The spooled film is gone (purged).", 500)
            data = self.spool.read(job.spool_name)
            triaged = triage_film(
                data,
                runtime,
                max_pixels=self.limits.max_pixels,
                overlay_max_side=self.limits.overlay_max_side,
            )
        except InputError as exc:  # the contract refused it: a poison film, never retried
            self._dead(job, exc.code, f"{exc.code}: {exc.detail}", tag)
            return
        except FileNotFoundError:
            self._dead(job, "spool_file_missing", "spool_file_missing: the spooled film is gone", tag)
            return
        except Exception as exc:
            reason = f"triage_failed: {type(exc).__name__}"
            if job.attempts + 1 >= self.settings.pacs_max_attempts:
                self._dead(job, "attempts_exhausted", f"{reason} ({job.attempts + 1} attempts)", tag)
            else:
                self.jobs.failed(job.sop_instance_uid, reason, final=False, now=time.time())
                self.metrics.triage_retries.inc()
                logger.warning("triage failed, requeued", extra={"job": tag, "error": type(exc).__name__})
            return
        sr_name = self.spool.write(triaged.sr, "sr", budgeted=False)
        sc_name = self.spool.write(triaged.sc, "sc", budgeted=False)
        result = TriageResult(
            predicted_class=triaged.predicted_class,
            probability=triaged.probability,
            triage_level=triaged.triage_level,
            model_name=triaged.model_name,
            model_version=triaged.model_version,
            sr_instance_uid=triaged.sr_instance_uid,
            sc_instance_uid=triaged.sc_instance_uid,
            sr_name=sr_name,
            sc_name=sc_name,
            ood_score=triaged.ood_score,
            ood_threshold=triaged.ood_threshold,
        )
        now = time.time()
        self.jobs.triaged(job.sop_instance_uid, result, [d.name for d in self.destinations], now)
        self.metrics.triaged.labels(triaged.triage_level or "none").inc()
        if not self.destinations:
            self.metrics.film_to_result.observe(max(0.0, now - job.received_at))
        self._triaged.set()
        logger.info(
            "film triaged",
            extra={"job": tag, "triage_level": triaged.triage_level, "model_version": triaged.model_version},
        )

    def _dead(self, job: Job, code: str, reason: str, tag: str) -> None:
        self.jobs.failed(job.sop_instance_uid, reason, final=True, now=time.time())
        self.metrics.dead_letters.labels(code).inc()
        logger.warning("film dead-lettered", extra={"job": tag, "reason": code})

    # --- delivery and retention ------------------------------------------------------------------------
    def _delivery_loop(self) -> None:
        last_sweep = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() - last_sweep >= min(
                    _SWEEP_EVERY_S, max(1.0, self.settings.pacs_retention_s)
                ):
                    self.sweep()
                    last_sweep = time.monotonic()
                due = self.jobs.due_deliveries(time.time(), _DELIVERY_ROUND) if self.destinations else []
                if due:
                    self._deliver(due)
                    continue
                wait = self.settings.pacs_poll_s
                upcoming = self.jobs.next_delivery_at() if self.destinations else None
                if upcoming is not None:
                    wait = min(wait, max(0.01, upcoming - time.time()))
                self._triaged.wait(wait)
                self._triaged.clear()
            except Exception:
                logger.exception("delivery loop error")
                self._stop.wait(self.settings.pacs_poll_s)

    def _deliver(self, due: list[Job]) -> None:
        failures: dict[str, str] = {}
        for destination in self.destinations:
            waiting = [job for job in due if destination.name in job.destinations]
            parcels = [self._parcel(job) for job in waiting]
            if not parcels:
                continue
            outcome = destination.deliver(parcels)
            now = time.time()
            for job in waiting:
                error = outcome.get(job.sop_instance_uid, "no outcome")
                if error is None:
                    self.jobs.delivered(job.sop_instance_uid, destination.name, now)
                    self.metrics.deliveries.labels(destination.name, "delivered").inc()
                else:
                    failures[job.sop_instance_uid] = error
                    self.metrics.deliveries.labels(destination.name, "failed").inc()
                    self.metrics.delivery_retries.labels(destination.name).inc()
        now = time.time()
        for job in due:
            if job.sop_instance_uid in failures:
                delay = min(
                    self.settings.pacs_retry_max_s, self.settings.pacs_retry_base_s * 2**job.delivery_attempts
                )
                self.jobs.delivery_failed(job.sop_instance_uid, failures[job.sop_instance_uid], now + delay)
                logger.warning(
                    "delivery failed, will retry",
                    extra={
                        "job": self.hasher(job.sop_instance_uid),
                        "error": failures[job.sop_instance_uid],
                        "retry_in_s": round(delay, 3),
                    },
                )
            else:
                self.metrics.film_to_result.observe(max(0.0, now - job.received_at))

    def _parcel(self, job: Job) -> Parcel:
        assert job.sr_name is not None and job.sc_name is not None
        return Parcel(job.sop_instance_uid, (self.spool.read(job.sr_name), self.spool.read(job.sc_name)))

    def sweep(self) -> int:
        """Delete spooled PHI of jobs finished longer than the retention ago; returns jobs purged."""
        now = time.time()
        purged = 0
        for job in self.jobs.purgeable(now - self.settings.pacs_retention_s):
            for name in (job.spool_name, job.sr_name, job.sc_name):
                if name is not None:
                    self.spool.delete(name)
            self.jobs.purged(job.sop_instance_uid, now)
            purged += 1
        return purged


def remove_orphans(jobs: JobTable, spool: Spool) -> int:
    """At start-up, before intake opens: spool files no job refers to were never acknowledged (a crash
    between the write and the row), or are results of a triage a crash cut short; both are redone."""
    orphans = spool.names() - jobs.spool_names()
    for name in orphans:
        spool.delete(name)
    return len(orphans)


__all__ = ["DEAD", "FilmLimits", "Workers", "remove_orphans"]
