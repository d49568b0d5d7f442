"""The HTTP edge of the gateway: ``POST /dicomweb/studies`` (STOW-RS intake) and ``GET /v1/studies``."""

import json
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, Literal, cast

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from pydicom.dataset import Dataset
from starlette.requests import ClientDisconnect

from service.contract import InputError
from service.dependencies import SettingsDep
from service.errors import ServiceError
from service.pacs.gateway import Gateway
from service.pacs.intake import OUT_OF_RESOURCES, Received
from service.pacs.jobs import Job, StudyFilter
from service.pacs.multipart import media_type, split_related
from service.pacs.schemas import StudyInstance, StudyList, StudySummary
from service.schemas import ErrorResponse
from service.upload import upload_too_large

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
MAX_INSTANCES_PER_REQUEST = 1000

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Malformed multipart/related body",
        401: "No API key, or not a valid one",
        403: "The API key lacks the 'predict' scope",
        408: "The body did not arrive within CXR_REQUEST_TIMEOUT_S",
        413: "Body larger than CXR_PACS_STOW_MAX_BYTES, or too many instances",
        415: 'Not multipart/related; type="application/dicom"',
        503: "The gateway is starting or stopping",
    }.items()
}
_STORE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Every instance stored and queued (PS3.18 store response, application/dicom+json)"},
    202: {"description": "Some instances stored; the others in the Failed SOP Sequence with a reason"},
    409: {"description": "No instance stored; each in the Failed SOP Sequence with a reason"},
    **_ERRORS,
}
dicomweb_router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])
studies_router = APIRouter(prefix="/v1", tags=["studies"])
PACS_ROUTERS = (dicomweb_router, studies_router)


async def get_gateway(request: Request) -> Gateway:
    gateway = getattr(request.app.state, "pacs", None)
    if gateway is None:
        raise ServiceError(
            "pacs_not_configured", "DICOM intake is off: CXR_PACS_SPOOL_DIR is not set, or not started.", 503
        )
    return cast(Gateway, gateway)


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


# --- STOW-RS -------------------------------------------------------------------------------------------
async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise upload_too_large(limit)
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise upload_too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise InputError("client_disconnected", "The client closed the connection mid-upload.", 400) from exc
    return b"".join(chunks)


def _store_response(results: list[Received]) -> dict[str, Any]:
    response = Dataset()
    stored, failed = [], []
    for received in results:
        item = Dataset()
        item.ReferencedSOPClassUID = received.sop_class_uid or "1.2.840.10008.5.1.4.1.1.7"
        item.ReferencedSOPInstanceUID = received.sop_instance_uid or "2.25.0"
        if received.stored:
            stored.append(item)
        else:
            item.FailureReason = received.status
            failed.append(item)
    if stored:
        response.ReferencedSOPSequence = stored
    if failed:  # present only when something failed (PS3.18 Table 10.5.3-1)
        response.FailedSOPSequence = failed
    return response.to_json_dict()


@dicomweb_router.post(
    "/studies", responses=_STORE_RESPONSES, summary="STOW-RS: store instances; each film is queued for triage"
)
async def store_instances(request: Request, gateway: GatewayDep, settings: SettingsDep) -> Response:
    return await _store(request, gateway, settings.max_upload_bytes, settings.request_timeout_s, None)


@dicomweb_router.post(
    "/studies/{study}", responses=_STORE_RESPONSES, summary="STOW-RS: store instances of one study"
)
async def store_study_instances(
    request: Request, study: str, gateway: GatewayDep, settings: SettingsDep
) -> Response:
    return await _store(request, gateway, settings.max_upload_bytes, settings.request_timeout_s, study)


async def _store(
    request: Request, gateway: Gateway, max_instance_bytes: int, timeout_s: float, study: str | None
) -> Response:
    kind, params = media_type(request.headers.get("content-type", ""))
    if kind != "multipart/related" or params.get("type", DICOM).lower() != DICOM:
        raise InputError(
            "unsupported_media_type",
            'Send instances as multipart/related; type="application/dicom" (PS3.18 STOW-RS).',
            415,
        )
    try:
        with anyio.fail_after(timeout_s):
            body = await _read_body(request, gateway.settings.pacs_stow_max_bytes)
    except TimeoutError as exc:
        raise InputError("upload_timeout", f"The upload did not arrive within {timeout_s:g} s.", 408) from exc
    parts = split_related(body, params.get("boundary", ""), MAX_INSTANCES_PER_REQUEST)
    del body
    if not parts:
        raise InputError("invalid_request", "The multipart body holds no instance.", 400)
    results: list[Received] = []
    for part in parts:
        if part.content_type != DICOM:
            results.append(Received(0xC000, "part is not application/dicom"))
        elif len(part.body) > max_instance_bytes:
            results.append(Received(OUT_OF_RESOURCES, "instance larger than CXR_MAX_UPLOAD_BYTES"))
        else:
            receive = partial(gateway.intake.receive, part.body, "stow", study_instance_uid=study)
            received = await anyio.to_thread.run_sync(receive)
            results.append(received)
        gateway.metrics.received.labels("stow", results[-1].outcome).inc()
    stored = sum(1 for result in results if result.stored)
    status = 200 if stored == len(results) else 202 if stored else 409
    return Response(json.dumps(_store_response(results)), status_code=status, media_type=DICOM_JSON)


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


@studies_router.get(
    "/studies",
    responses={status: _ERRORS[status] for status in (401, 403, 503)},
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
