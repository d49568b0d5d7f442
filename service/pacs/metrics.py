"""Prometheus metrics of the PACS integration, registered in the app's own registry.

Queue figures are read from the job table at scrape time, so they are right after a restart too.
Labels come from closed sets: sources, outcomes, destinations, the contract's error codes.
"""

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.pacs.jobs import JobTable
from service.pacs.spool import Spool

_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
RECEIVE_OUTCOMES = ("stored", "duplicate", "refused", "out_of_resources")


class PacsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "cxr_pacs_received",
            "Instances received, by source (dimse, stow) and outcome.",
            ("source", "outcome"),
            registry=registry,
        )
        self.associations_refused = Counter(
            "cxr_pacs_associations_refused",
            "DICOM associations refused: peer address or calling AE title not allowed.",
            ("reason",),
            registry=registry,
        )
        self.triaged = Counter(
            "cxr_pacs_triaged", "Films triaged, by triage level.", ("level",), registry=registry
        )
        self.dead_letters = Counter(
            "cxr_pacs_dead_letters", "Films dead-lettered, by reason code.", ("reason",), registry=registry
        )
        self.triage_retries = Counter(
            "cxr_pacs_triage_retries",
            "Triage attempts that failed unexpectedly and were requeued.",
            registry=registry,
        )
        self.deliveries = Counter(
            "cxr_pacs_deliveries",
            "Jobs whose results reached a destination (delivered) or not this round (failed).",
            ("destination", "outcome"),
            registry=registry,
        )
        self.delivery_retries = Counter(
            "cxr_pacs_delivery_retries",
            "Delivery rounds scheduled again with back-off after a failure.",
            ("destination",),
            registry=registry,
        )
        self.film_to_result = Histogram(
            "cxr_pacs_film_to_result_seconds",
            "From an instance's receipt to its results at every destination.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        for source in ("dimse", "stow"):
            for outcome in RECEIVE_OUTCOMES:
                self.received.labels(source, outcome)
        for reason in ("peer", "calling_ae"):
            self.associations_refused.labels(reason)


class QueueCollector(Collector):
    """Queue depth, oldest waiting job, dead letters, undelivered results and spool size, read live."""

    def __init__(self, jobs: JobTable, spool: Spool) -> None:
        self.jobs = jobs
        self.spool = spool

    def collect(self) -> Iterator[Metric]:
        stats = self.jobs.stats()
        age = 0.0 if stats.oldest_received_at is None else max(0.0, time.time() - stats.oldest_received_at)
        yield GaugeMetricFamily(
            "cxr_pacs_queue_depth", "Films received and not yet triaged.", value=stats.waiting
        )
        yield GaugeMetricFamily(
            "cxr_pacs_oldest_job_age_seconds",
            "Age of the oldest film waiting for triage (0 = none).",
            value=age,
        )
        yield GaugeMetricFamily(
            "cxr_pacs_dead_letter_jobs", "Films in the dead-letter state.", value=stats.dead
        )
        yield GaugeMetricFamily(
            "cxr_pacs_undelivered_jobs",
            "Triaged films whose results a destination still lacks.",
            value=stats.undelivered,
        )
        yield GaugeMetricFamily(
            "cxr_pacs_spool_bytes", "Bytes of spooled films and results.", value=self.spool.used_bytes
        )
