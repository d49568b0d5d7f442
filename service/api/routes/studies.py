"""``GET /v1/studies``: the PACS gateway's worklist, most urgent and newest first; and under
``/v1/studies/{study}/instances/{sop}``, one film's entry and its results (the Grad-CAM overlay, the
bare film, the SR and SC as DICOM), addressed by the UIDs the worklist lists."""

import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Path, Query, Response
from pydantic import AwareDatetime, BeforeValidator

from service.api.dependencies import GatewayDep, LimiterDep, SettingsDep
from service.api.routes.dicomweb import DICOM, ERRORS
from service.api.schemas import ErrorResponse, StudyInstance, StudyList, StudySummary
from service.contract import InputError
from service.contract.uids import MAX_UID_LENGTH, UID_PATTERN, valid_uid
from service.observability.audit import current_audit
from service.outputs.dicom_results import secondary_capture_png
from service.pacs import results
from service.pacs.gateway import Gateway
from service.pacs.jobs import MAX_OFFSET, Job, StudyFilter

router = APIRouter(prefix="/v1", tags=["studies"])


# --- the worklist ---------------------------------------------------------------------------------------
def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


_ISO_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso_8601_only(value: object) -> object:
    """Pydantic would read "1733480000" or "6.5e-33" as a Unix time; the schema promises a date-time
    (RFC 3339), so anything that does not start like one is refused before it is parsed."""
    if isinstance(value, str) and not _ISO_DATE_TIME.match(value):
        raise ValueError("expected an ISO 8601 date-time with a time zone, e.g. 2026-12-06T08:00:00Z")
    return value


# A time zone is required: a naive time would be read in the server's zone, not the caller's.
IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_iso_8601_only)]


def _instance(job: Job, retention_s: float) -> StudyInstance:
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
        ood_score=job.ood_score,
        ood_threshold=job.ood_threshold,
        result_state=results.result_state(job),
        results_expire_at=_time(results.results_expire_at(job, retention_s)),
    )


_DELIVERY_ORDER = ("retrying", "pending", "delivered", "none")


def _summary(study_uid: str, jobs: list[Job], retention_s: float) -> StudySummary:
    instances = [_instance(job, retention_s) for job in jobs]
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
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    triage_level: Annotated[Literal["urgent", "routine"] | None, Query()] = None,
    delivery_state: Annotated[Literal["pending", "retrying", "delivered", "none"] | None, Query()] = None,
    study_instance_uid: Annotated[str | None, Query(max_length=64)] = None,
    received_after: Annotated[IsoDateTime | None, Query(description="ISO 8601; with a time zone")] = None,
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
        retention_s = gateway.settings.pacs_retention_s
        return [_summary(uid, by_study[uid], retention_s) for uid in uids], total

    studies, total = await anyio.to_thread.run_sync(read)
    return StudyList(total=total, limit=limit, offset=offset, studies=studies)


# --- one film and its results ---------------------------------------------------------------------------
def _uid_path(what: str) -> Any:
    # The pattern documents the syntax (PS3.5 9.1); the route checks it itself, so a bad UID gets
    # 422 invalid_uid in words rather than a regular expression.
    return Path(
        description=f"{what} (PS3.5 9.1: digits and dots, at most {MAX_UID_LENGTH} characters)",
        json_schema_extra={"pattern": f"^{UID_PATTERN}$", "maxLength": MAX_UID_LENGTH},
    )


StudyUid = Annotated[str, _uid_path("Study Instance UID, as GET /v1/studies lists it")]
SopUid = Annotated[str, _uid_path("SOP Instance UID of the received film, as GET /v1/studies lists it")]
_RESULT_ERRORS: dict[int | str, dict[str, Any]] = {
    **{status: ERRORS[status] for status in (401, 403, 503)},
    404: {
        "model": ErrorResponse,
        "description": "No such film in that study on this gateway (instance_not_found)",
    },
    409: {
        "model": ErrorResponse,
        "description": "Not triaged yet (result_pending, with Retry-After), or dead-lettered (no_result)",
    },
    410: {
        "model": ErrorResponse,
        "description": "Deleted after CXR_PACS_RETENTION_S (result_expired); the PACS holds the SR and SC",
    },
    422: {"model": ErrorResponse, "description": "A UID that is not one (invalid_uid)"},
}
_INSTANCE_ERRORS: dict[int | str, dict[str, Any]] = {
    status: _RESULT_ERRORS[status] for status in (401, 403, 404, 422, 503)
}


def _checked(study: str, sop: str) -> tuple[str, str]:
    """Both path UIDs, or 422 naming the parameter (never echoing what is not a UID)."""
    for name, value in (("study_instance_uid", study), ("sop_instance_uid", sop)):
        if valid_uid(value) is None:
            raise InputError(
                "invalid_uid",
                f"{name} is not a DICOM UID: digits and dots, at most {MAX_UID_LENGTH} characters, "
                "no component with a leading zero (PS3.5 9.1).",
                422,
            )
    current_audit().sop_instance_uid = sop  # the audit line names the film by its hash only
    return study, sop


def _kept_job(gateway: Gateway, study: str, sop: str) -> Job:
    job = results.find_job(gateway.jobs, *_checked(study, sop))
    results.require_results(job, retry_after_s=max(1.0, gateway.settings.pacs_poll_s))
    audit = current_audit()
    audit.model_name, audit.model_version = job.model_name, job.model_version
    return job


def _binary(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    content = {media_type: {"schema": {"type": "string", "format": "binary"}}}
    return {200: {"content": content, "description": description}, **_RESULT_ERRORS}


@router.get(
    "/studies/{study_instance_uid}/instances/{sop_instance_uid}",
    responses=_INSTANCE_ERRORS,
    response_model=StudyInstance,
    summary="One received film: its state, findings and where its results stand",
)
async def get_instance(
    study_instance_uid: StudyUid, sop_instance_uid: SopUid, gateway: GatewayDep
) -> StudyInstance:
    study, sop = _checked(study_instance_uid, sop_instance_uid)
    job = await anyio.to_thread.run_sync(results.find_job, gateway.jobs, study, sop)
    return _instance(job, gateway.settings.pacs_retention_s)


async def _spooled(gateway: Gateway, study: str, sop: str, kind: results.SpooledKind) -> bytes:
    def read() -> bytes:
        return results.read_spooled(gateway.intake.spool, _kept_job(gateway, study, sop), kind)

    return await anyio.to_thread.run_sync(read)


async def _rendered(render: Callable[[], bytes], limiter: LimiterDep) -> Response:
    # Decoding and PNG encoding are CPU work: they share the decode threads with /v1/predict.
    png = await anyio.to_thread.run_sync(render, limiter=limiter)
    return Response(png, media_type="image/png")


@router.get(
    "/studies/{study_instance_uid}/instances/{sop_instance_uid}/overlay.png",
    response_class=Response,
    responses=_binary(
        "image/png", "The Grad-CAM overlay (heat map over the film) the Secondary Capture holds"
    ),
    summary="A triaged film's Grad-CAM overlay, as PNG",
)
async def get_overlay(
    study_instance_uid: StudyUid, sop_instance_uid: SopUid, gateway: GatewayDep, limiter: LimiterDep
) -> Response:
    sc = await _spooled(gateway, study_instance_uid, sop_instance_uid, "sc")
    return await _rendered(partial(secondary_capture_png, sc), limiter)


@router.get(
    "/studies/{study_instance_uid}/instances/{sop_instance_uid}/film.png",
    response_class=Response,
    responses=_binary(
        "image/png", "The film without the heat map: grayscale, the overlay's size and stretch"
    ),
    summary="A triaged film without the heat map, as PNG (to fade the overlay over it)",
)
async def get_film(
    study_instance_uid: StudyUid,
    sop_instance_uid: SopUid,
    gateway: GatewayDep,
    settings: SettingsDep,
    limiter: LimiterDep,
) -> Response:
    film = await _spooled(gateway, study_instance_uid, sop_instance_uid, "film")
    render = partial(results.bare_film_png, film, settings.decode_limits(), settings.overlay_max_side)
    return await _rendered(render, limiter)


def _dicom(data: bytes, name: str) -> Response:
    return Response(data, media_type=DICOM, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get(
    "/studies/{study_instance_uid}/instances/{sop_instance_uid}/sc.dcm",
    response_class=Response,
    responses=_binary(DICOM, "The Grad-CAM Secondary Capture, DICOM Part 10, as filed in the PACS"),
    summary="A triaged film's Secondary Capture (Grad-CAM overlay), as DICOM",
)
async def get_secondary_capture(
    study_instance_uid: StudyUid, sop_instance_uid: SopUid, gateway: GatewayDep
) -> Response:
    return _dicom(await _spooled(gateway, study_instance_uid, sop_instance_uid, "sc"), "sc.dcm")


@router.get(
    "/studies/{study_instance_uid}/instances/{sop_instance_uid}/sr.dcm",
    response_class=Response,
    responses=_binary(DICOM, "The Comprehensive SR (TID 1500), DICOM Part 10, as filed in the PACS"),
    summary="A triaged film's Structured Report, as DICOM",
)
async def get_structured_report(
    study_instance_uid: StudyUid, sop_instance_uid: SopUid, gateway: GatewayDep
) -> Response:
    return _dicom(await _spooled(gateway, study_instance_uid, sop_instance_uid, "sr"), "sr.dcm")
