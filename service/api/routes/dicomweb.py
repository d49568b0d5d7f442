"""``POST /dicomweb/studies`` (STOW-RS, PS3.18 10.5): instances into the PACS gateway's queue."""

import json
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request, Response
from pydicom.dataset import Dataset
from starlette.requests import ClientDisconnect

from service.api.dependencies import GatewayDep, SettingsDep, UploadsDep
from service.api.multipart import media_type, split_related
from service.api.schemas import ErrorResponse
from service.api.upload import upload_too_large
from service.contract import InputError
from service.inference.upload_budget import UploadLease
from service.pacs.gateway import Gateway
from service.pacs.intake import OUT_OF_RESOURCES, Received
from service.settings import Settings

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
MAX_INSTANCES_PER_REQUEST = 1000

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Malformed multipart/related body",
        401: "No API key, or not a valid one",
        403: "The API key lacks the 'predict' scope",
        408: "The body did not arrive within CXR_REQUEST_TIMEOUT_S",
        413: "Body larger than CXR_PACS_STOW_MAX_BYTES, or too many instances",
        415: 'Not multipart/related; type="application/dicom"',
        422: "A query or path parameter is invalid",
        503: "Gateway starting or stopping, or the upload budget (CXR_UPLOAD_BYTES_IN_FLIGHT) spent",
    }.items()
}
_STORE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Every instance stored and queued (PS3.18 store response, application/dicom+json)"},
    202: {"description": "Some instances stored; the others in the Failed SOP Sequence with a reason"},
    409: {"description": "No instance stored; each in the Failed SOP Sequence with a reason"},
    **ERRORS,
}
router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])


# --- STOW-RS -------------------------------------------------------------------------------------------
async def _read_body(request: Request, limit: int, lease: UploadLease) -> bytes:
    """The body, within ``limit`` and within the service's upload budget (503 once that is spent)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        if int(declared) > limit:
            raise upload_too_large(limit)
        lease.cover(int(declared))
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise upload_too_large(limit)
            lease.cover(received)
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


@router.post(
    "/studies", responses=_STORE_RESPONSES, summary="STOW-RS: store instances; each film is queued for triage"
)
async def store_instances(
    request: Request, gateway: GatewayDep, settings: SettingsDep, uploads: UploadsDep
) -> Response:
    async with uploads.lease() as lease:
        return await _store(request, gateway, settings, lease, None)


@router.post("/studies/{study}", responses=_STORE_RESPONSES, summary="STOW-RS: store instances of one study")
async def store_study_instances(
    request: Request, study: str, gateway: GatewayDep, settings: SettingsDep, uploads: UploadsDep
) -> Response:
    async with uploads.lease() as lease:
        return await _store(request, gateway, settings, lease, study)


async def _store(
    request: Request, gateway: Gateway, settings: Settings, lease: UploadLease, study: str | None
) -> Response:
    # The same key scope, per-file limit, upload budget and deadline as POST /v1/predict.
    max_instance_bytes, timeout_s = settings.max_upload_bytes, settings.request_timeout_s
    kind, params = media_type(request.headers.get("content-type", ""))
    if kind != "multipart/related" or params.get("type", DICOM).lower() != DICOM:
        raise InputError(
            "unsupported_media_type",
            'Send instances as multipart/related; type="application/dicom" (PS3.18 STOW-RS).',
            415,
        )
    try:
        with anyio.fail_after(timeout_s):
            body = await _read_body(request, gateway.settings.pacs_stow_max_bytes, lease)
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
