"""A film's results read back from the spool, for viewers (the review page, a script): where each
result stands, and its bytes while they are kept.

The gateway keeps what it built - the Structured Report and the Grad-CAM Secondary Capture - beside
the film in the spool until ``CXR_PACS_RETENTION_S`` after the job finished (``Workers.sweep``); the
job row, with its UIDs and findings, stays. So a film's results are, in turn: unknown (404), not
built yet (409, retry), never to be built (a dead letter, 409), kept (200), or deleted by retention
(410, and the PACS holds them). Errors name only the UIDs the caller gave and our own words.
"""

import math
from typing import Literal

from service.contract import DecodeLimits, decode_image
from service.errors import ServiceError
from service.outputs.overlay import film_png, overlay_background
from service.pacs.jobs import DEAD, DONE, QUEUED, TRIAGING, Job, JobTable
from service.pacs.spool import Spool

ResultState = Literal["pending", "available", "expired", "none"]
SpooledKind = Literal["sr", "sc", "film"]


def result_state(job: Job) -> ResultState:
    """pending: not triaged yet; none: dead-lettered, no result will come; available: the spool holds
    the SR and SC; expired: retention deleted them."""
    if job.state == DEAD:
        return "none"
    if job.state in (QUEUED, TRIAGING) or job.sr_instance_uid is None:
        return "pending"
    if job.purged_at is not None or job.sr_name is None or job.sc_name is None:
        return "expired"
    return "available"


def results_expire_at(job: Job, retention_s: float) -> float | None:
    """When retention will delete the kept results: ``retention_s`` after the job finished (delivered
    to every destination, or triaged where there is none), as ``JobTable.purgeable`` selects. None
    while delivery is still pending (kept until it succeeds), and once they are gone."""
    if job.state != DONE or result_state(job) != "available":
        return None
    return (job.delivered_at or job.finished_at or job.received_at) + retention_s


def find_job(jobs: JobTable, study_uid: str, sop_uid: str) -> Job:
    """The job of film ``sop_uid`` in study ``study_uid``, or 404 naming both."""
    job = jobs.get(sop_uid)
    if job is None or job.study_instance_uid != study_uid:
        raise ServiceError(
            "instance_not_found",
            f"No film with SOP Instance UID {sop_uid} in study {study_uid} was received by this gateway.",
            404,
        )
    return job


def require_results(job: Job, retry_after_s: float) -> None:
    """Pass only when the job's results are kept in the spool; 409 (pending or never) or 410 else."""
    state = result_state(job)
    uid = job.sop_instance_uid
    if state == "pending":
        raise ServiceError(
            "result_pending",
            f"Film {uid} is {job.state}: its results are not built yet. Ask again shortly.",
            409,
            headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))},
        )
    if state == "none":
        code = (job.reason or "dead_letter").split(":", 1)[0]
        raise ServiceError(
            "no_result",
            f"Film {uid} was not triaged ({code}), so it has no result; GET /v1/studies gives the reason.",
            409,
        )
    if state == "expired":
        raise expired(job)


def expired(job: Job) -> ServiceError:
    return ServiceError(
        "result_expired",
        f"The results of film {job.sop_instance_uid} were deleted from this gateway after "
        "CXR_PACS_RETENTION_S; the PACS holds them as SR "
        f"{job.sr_instance_uid} and Secondary Capture {job.sc_instance_uid}.",
        410,
    )


def read_spooled(spool: Spool, job: Job, kind: SpooledKind) -> bytes:
    """The kept SR, SC or source film of ``job`` (checked with ``require_results``); 410 if retention
    deleted it in the meantime (the sweep deletes files before it marks the row)."""
    name = {"sr": job.sr_name, "sc": job.sc_name, "film": job.spool_name}[kind]
    if name is None:
        raise expired(job)
    try:
        return spool.read(name)
    except FileNotFoundError:
        raise expired(job) from None


def bare_film_png(film: bytes, limits: DecodeLimits, max_side: int) -> bytes:
    """The spooled film without the heat map, as the grayscale PNG ``POST /v1/predict?film=true``
    returns: decoded through the contract and stretched exactly as the overlay's background, so the
    two stack pixel for pixel (with the same ``CXR_OVERLAY_MAX_SIDE`` as when it was triaged)."""
    decoded = decode_image(film, limits)
    return film_png(overlay_background(decoded.pixels, max_side))
