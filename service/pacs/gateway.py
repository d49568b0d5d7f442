"""The PACS gateway's life: open spool and job table, recover, start workers and SCP; stop in reverse.

Started by the app's lifespan once the model is loaded, stopped before the model goes.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from pynetdicom.transport import ThreadedAssociationServer

from service.inference.runtime import ModelRuntime
from service.observability.audit import UidHasher
from service.pacs.delivery import Destination, DimseDestination, StowDestination
from service.pacs.intake import Intake
from service.pacs.jobs import JobTable
from service.pacs.metrics import PacsMetrics, QueueCollector
from service.pacs.scp import start_scp
from service.pacs.spool import Spool
from service.pacs.workers import FilmLimits, Workers, remove_orphans
from service.settings import PacsSettings

logger = logging.getLogger(__name__)
JOB_TABLE = "jobs.sqlite3"
SPOOL_FOLDER = "files"


def destinations_of(settings: PacsSettings) -> list[Destination]:
    found: list[Destination] = []
    if settings.pacs_dest_host is not None and settings.pacs_dest_port is not None:
        found.append(
            DimseDestination(
                settings.pacs_dest_host,
                settings.pacs_dest_port,
                settings.pacs_dest_ae_title,
                settings.dicom_ae_title,
            )
        )
    if settings.pacs_stow_url is not None:
        found.append(StowDestination(settings.pacs_stow_url))
    return found


@dataclass
class Gateway:
    settings: PacsSettings
    intake: Intake
    workers: Workers
    metrics: PacsMetrics
    scp: ThreadedAssociationServer | None = None

    @property
    def jobs(self) -> JobTable:
        return self.intake.jobs

    def stop(self) -> None:
        if self.scp is not None:
            self.scp.shutdown()  # no new instance is acknowledged from here on
        self.workers.stop()
        self.intake.jobs.close()


def start_gateway(
    settings: PacsSettings,
    limits: FilmLimits,
    runtime: Callable[[], ModelRuntime | None],
    registry: CollectorRegistry,
    hasher: UidHasher,
) -> Gateway:
    assert settings.pacs_spool_dir is not None
    root = settings.pacs_spool_dir
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    spool = Spool(
        root / SPOOL_FOLDER,
        max_bytes=settings.pacs_spool_max_bytes,
        min_free_bytes=settings.pacs_spool_min_free_bytes,
    )
    jobs = JobTable(root / JOB_TABLE)
    recovered = jobs.recover(settings.pacs_max_attempts)
    orphans = remove_orphans(jobs, spool)
    metrics = PacsMetrics(registry)
    registry.register(QueueCollector(jobs, spool))
    intake = Intake(spool, jobs, hasher)
    workers = Workers(
        settings,
        limits=limits,
        intake=intake,
        destinations=destinations_of(settings),
        runtime=runtime,
        metrics=metrics,
        hasher=hasher,
    )
    workers.start()
    gateway = Gateway(settings, intake, workers, metrics)
    logger.info(
        "PACS gateway started",
        extra={
            "requeued_after_restart": recovered,
            "orphan_files_removed": orphans,
            "destinations": [d.name for d in workers.destinations],
            "retention_s": settings.pacs_retention_s,
        },
    )
    if settings.dicom_port is not None:
        try:
            gateway.scp = start_scp(settings, intake, metrics)
        except BaseException:
            gateway.stop()
            raise
    return gateway
