"""``POST /v1/predict``: one film in, class probabilities, decision and Grad-CAM overlay out."""

import base64
import logging
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request

from service.contract import DecodedImage
from service.dependencies import LimiterDep, MetricsDep, RuntimeDep, SettingsDep
from service.logs import request_id_var
from service.overlay import render_overlay
from service.runtime import Inference, ModelRuntime
from service.schemas import DicomRef, ErrorResponse, GradCam, ImageInfo, ModelRef, PredictionResponse
from service.upload import FILE_FIELD, read_upload

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["predict"])

# The body is parsed by ``read_upload`` (streamed, size-capped), so it is declared here for the docs.
_MULTIPART_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FILE_FIELD],
                    "properties": {
                        FILE_FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "PNG, JPEG or DICOM Part 10 file; the format is read from "
                            "the bytes, never from the file name or Content-Type.",
                        }
                    },
                }
            }
        },
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Empty, corrupt or truncated file; malformed multipart body",
        413: "Upload larger than CXR_MAX_UPLOAD_BYTES",
        415: "Not a PNG, JPEG or DICOM file",
        422: "Missing 'file' part, too many pixels, unsupported DICOM (modality, frames, no pixels...)",
        503: "No model loaded",
    }.items()
}


@dataclass(frozen=True)
class _Analysis:
    decoded: DecodedImage
    inference: Inference
    predicted_class: str
    overlay: GradCam | None


def _analyse(data: bytes, runtime: ModelRuntime, max_pixels: int, overlay_max_side: int | None) -> _Analysis:
    """Decode, run and draw: CPU-bound, so it runs on a worker thread, never on the event loop."""
    tensor, decoded = runtime.prepare(data, max_pixels)
    inference = runtime.infer(tensor)
    predicted = runtime.decide(inference.probabilities)
    gradcam = None
    if overlay_max_side is not None:
        cam = inference.cams[runtime.class_names.index(predicted)]
        png, width, height = render_overlay(decoded.pixels, cam, overlay_max_side)
        gradcam = GradCam(
            class_name=predicted, width=width, height=height, png_base64=base64.b64encode(png).decode("ascii")
        )
    return _Analysis(decoded=decoded, inference=inference, predicted_class=predicted, overlay=gradcam)


@router.post(
    "/predict",
    response_model=PredictionResponse,
    responses=_ERRORS,
    openapi_extra=_MULTIPART_BODY,
    summary="Classify one chest film and return its Grad-CAM overlay",
)
async def predict(
    *,
    request: Request,
    runtime: RuntimeDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    limiter: LimiterDep,
    overlay: Annotated[bool, Query(description="Include the Grad-CAM overlay PNG.")] = True,
) -> PredictionResponse:
    data = await read_upload(request, settings.max_upload_bytes)
    analysis = await anyio.to_thread.run_sync(
        partial(_analyse, data, runtime, settings.max_pixels, settings.overlay_max_side if overlay else None),
        limiter=limiter,
    )
    del data  # the upload can be tens of MB; do not hold it while the response is serialised
    decoded, inference = analysis.decoded, analysis.inference
    metrics.inference_duration.observe(inference.inference_ms / 1000.0)
    metrics.predictions.labels(analysis.predicted_class).inc()
    logger.info(
        "prediction",
        extra={
            "source_format": decoded.source_format.value,
            "image_width": decoded.width,
            "image_height": decoded.height,
            "predicted_class": analysis.predicted_class,
            "inference_ms": round(inference.inference_ms, 3),
        },
    )
    dicom = decoded.dicom
    return PredictionResponse(
        request_id=request_id_var.get() or "",
        model=ModelRef(name=runtime.card.name, version=runtime.card.version),
        probabilities={
            name: float(p) for name, p in zip(runtime.class_names, inference.probabilities, strict=True)
        },
        predicted_class=analysis.predicted_class,
        threshold=runtime.threshold,
        image=ImageInfo(source_format=decoded.source_format, width=decoded.width, height=decoded.height),
        dicom=None
        if dicom is None
        else DicomRef(study_instance_uid=dicom.study_instance_uid, sop_instance_uid=dicom.sop_instance_uid),
        execution_provider=runtime.provider,
        inference_ms=inference.inference_ms,
        gradcam=analysis.overlay,
    )
