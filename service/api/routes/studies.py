"""``GET /v1/studies``: the PACS gateway's worklist, most urgent and newest first."""

from datetime import UTC, datetime
from typing import Annotated, Literal

import anyio.to_thread
from fastapi import APIRouter, Query

from service.api.dependencies import GatewayDep
from service.api.routes.dicomweb import ERRORS
from service.api.schemas import StudyInstance, StudyList, StudySummary
from service.pacs.jobs import Job, StudyFilter

router = APIRouter(prefix="/v1", tags=["studies"])


# --- the worklist ---------------------------------------------------------------------------------------
def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


def _instance(job: Job) -> StudyInstance:
    return StudyInstance(
        sop_instance_uid=job.sop_instance_uid,
        series_instance_uid=job.series_instance_uid,
        source=job.source,
        state=job.state,
        reason=job.reason,
        received_at=_time(job.received_at),
        finished_at=_time(job.finished_at),
        predicted_class=job.predicted_class,
        triage_level=job.triage_level,
        probability=job.probability,
        model_name=job.model_name,
        model_version=job.model_version,
        delivery_state=job.delivery_state or ("none" if job.state == "dead" else "pending"),
        delivered_at=_time(job.delivered_at),
        delivery_attempts=job.delivery_attempts,
        delivery_error=job.delivery_error,
        sr_instance_uid=job.sr_instance_uid,
        sc_instance_uid=job.sc_instance_uid,
    )


_DELIVERY_ORDER = ("retrying", "pending", "delivered", "none")


def _summary(study_uid: str, jobs: list[Job]) -> StudySummary:
    instances = [_instance(job) for job in jobs]
    levels = {job.triage_level for job in jobs if job.triage_level}
    probabilities = [job.probability for job in jobs if job.probability is not None]
    finished = [job.finished_at for job in jobs]
    versions = sorted({job.model_version for job in jobs if job.model_version})
    return StudySummary(
        study_instance_uid=study_uid,
        received_at=_time(min(job.received_at for job in jobs)),
        finished_at=None
        if any(f is None for f in finished)
        else _time(max(f for f in finished if f is not None)),
        triage_level="urgent" if "urgent" in levels else ("routine" if levels else None),
        probability=max(probabilities) if probabilities else None,
        model_version=versions[-1] if versions else None,
        delivery_state=min((i.delivery_state for i in instances), key=_DELIVERY_ORDER.index),
        instances=instances,
    )


@router.get(
    "/studies",
    responses={status: ERRORS[status] for status in (401, 403, 422, 503)},
    response_model=StudyList,
    summary="Triaged studies, most urgent and newest first",
)
async def list_studies(
    *,
    gateway: GatewayDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    triage_level: Annotated[Literal["urgent", "routine"] | None, Query()] = None,
    delivery_state: Annotated[Literal["pending", "retrying", "delivered", "none"] | None, Query()] = None,
    study_instance_uid: Annotated[str | None, Query(max_length=64)] = None,
    received_after: Annotated[datetime | None, Query(description="ISO 8601; with a time zone")] = None,
) -> StudyList:
    where = StudyFilter(
        triage_level=triage_level,
        delivery_state=delivery_state,
        study_instance_uid=study_instance_uid,
        received_after=None if received_after is None else received_after.timestamp(),
    )

    def read() -> tuple[list[StudySummary], int]:
        uids, total = gateway.jobs.study_uids(where, limit, offset)
        by_study: dict[str, list[Job]] = {uid: [] for uid in uids}
        for job in gateway.jobs.jobs_of_studies(uids):
            by_study[job.study_instance_uid].append(job)
        return [_summary(uid, by_study[uid]) for uid in uids], total

    studies, total = await anyio.to_thread.run_sync(read)
    return StudyList(total=total, limit=limit, offset=offset, studies=studies)
