"""``POST /v1/predict``: one film in, class probabilities, decision and Grad-CAM overlay out."""

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, Literal, TypeVar

import anyio.to_thread
import numpy as np
import numpy.typing as npt
from anyio import CapacityLimiter
from fastapi import APIRouter, Query, Request, Response

from service.api.dependencies import ServingDep
from service.api.schemas import (
    DicomRef,
    ErrorResponse,
    GradCam,
    ImageInfo,
    ModelRef,
    OutOfDistribution,
    PredictionResponse,
    Triage,
)
from service.api.upload import FILE_FIELD, UploadPolicy, read_upload
from service.contract import DecodeLimits, DicomInfo, InputError, SourceFormat
from service.inference.admission import Deadline, processing_timeout, upload_timeout
from service.inference.runtime import Inference, ModelRuntime
from service.observability.audit import current_audit
from service.observability.logs import request_id_var
from service.observability.metrics import Metrics
from service.outputs.dicom_results import build_secondary_capture, build_structured_report
from service.outputs.overlay import film_png, overlay_background, overlay_pixels
from service.outputs.png import encode_png
from service.settings import Settings

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
        400: "Empty, corrupt or truncated file; DICOM metadata past its limits (dicom_too_deep, "
        "dicom_too_many_elements, dicom_header_too_large); malformed multipart body (too_many_parts, "
        "multipart_boundary_missing, multipart_truncated)",
        401: "No API key, or not a valid one (WWW-Authenticate: Bearer)",
        403: "The API key lacks the 'predict' scope",
        408: "The upload did not arrive within CXR_REQUEST_TIMEOUT_S (request_timeout), or stalled or "
        "trickled below CXR_UPLOAD_MIN_RATE_BPS / CXR_UPLOAD_IDLE_TIMEOUT_S (upload_too_slow)",
        413: "Upload larger than CXR_MAX_UPLOAD_BYTES",
        415: "Not a PNG, JPEG or DICOM file",
        422: "Missing 'file' part, a threshold query parameter, too many pixels, a decompression bomb, "
        "an animated image, unsupported DICOM (modality, body part, view, frames, no pixels, DICOMDIR, "
        "executable preamble...), out_of_distribution",
        503: "No model loaded; or overloaded (queue full, upload bytes in flight spent, or the deadline "
        "passed while queued): "
        "retry after Retry-After",
        504: "Decoding and inference took longer than CXR_REQUEST_TIMEOUT_S",
    }.items()
}


ResultFormat = Literal["json", "sc", "sr"]
DICOM_MEDIA_TYPE = "application/dicom"
T = TypeVar("T")


class _Stages:
    """Seconds per stage of one prediction, into ``cxr_predict_stage_seconds`` (thread-safe)."""

    def __init__(self, metrics: Metrics) -> None:
        self._histograms = metrics.predict_stages

    def observe(self, stage: str, seconds: float) -> None:
        self._histograms[stage].observe(max(seconds, 0.0))

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe(stage, time.perf_counter() - start)

    async def in_thread(
        self, work: Callable[[], T], limiter: CapacityLimiter, wait: str, run: str | None
    ) -> T:
        """``work`` on a worker thread: its own time is ``run`` (unless None); the time to get a
        thread and to be resumed after it is ``wait`` (what the thread hop costs under load)."""
        started = ended = 0.0

        def timed() -> T:
            nonlocal started, ended
            started = time.perf_counter()
            try:
                return work()
            finally:
                ended = time.perf_counter()

        submitted = time.perf_counter()
        result = await anyio.to_thread.run_sync(timed, limiter=limiter)
        self.observe(wait, (started - submitted) + (time.perf_counter() - ended))
        if run is not None:
            self.observe(run, ended - started)
        return result


@dataclass(frozen=True)
class _Film:
    """What a prediction keeps of its upload once decoded: the model input, the overlay's background
    (shrunk to ``CXR_OVERLAY_MAX_SIDE``) and the header facts for the answer. The full-resolution
    plane is dropped here, so a film waiting for its batch holds kilobytes, not the whole film."""

    tensor: npt.NDArray[np.float32]
    source_format: SourceFormat
    width: int
    height: int
    dicom: DicomInfo | None
    overlay_background: npt.NDArray[np.float32] | None


@dataclass(frozen=True)
class _Analysis:
    film: _Film
    inference: Inference
    predicted_class: str
    overlay: GradCam | None
    overlay_png: bytes | None


def _prepare(data: bytes, runtime: ModelRuntime, limits: DecodeLimits, overlay_max_side: int | None) -> _Film:
    """Decode and preprocess (CPU-bound: runs on a worker thread, never on the event loop)."""
    tensor, decoded = runtime.prepare(data, limits=limits)
    background = (
        None if overlay_max_side is None else overlay_background(decoded.pixels, overlay_max_side, tensor[0])
    )
    return _Film(tensor, decoded.source_format, decoded.width, decoded.height, decoded.dicom, background)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _conclude(
    runtime: ModelRuntime, film: _Film, inference: Inference, stages: _Stages, with_film: bool = False
) -> _Analysis:
    """Out-of-distribution check, decision and overlay for one film's model outputs."""
    if runtime.is_out_of_distribution(inference):
        assert runtime.card.ood is not None and inference.ood_score is not None
        raise InputError(
            "out_of_distribution",
            "The image does not resemble the frontal chest radiographs this model was trained on "
            f"(out-of-distribution score {inference.ood_score:.3f} > {runtime.card.ood.threshold:.3f}); "
            "it was not classified.",
            422,
        )
    predicted = runtime.decide(inference.probabilities)
    gradcam, png = None, None
    if film.overlay_background is not None:
        with stages.time("colour_blend"):
            rgb = overlay_pixels(
                film.overlay_background, inference.cams[runtime.class_names.index(predicted)]
            )
        with stages.time("png_encode"):
            png = encode_png(rgb)
            bare = film_png(film.overlay_background) if with_film else None
        with stages.time("base64"):
            png_base64, film_base64 = _b64(png), None if bare is None else _b64(bare)
        height, width = film.overlay_background.shape
        gradcam = GradCam(
            class_name=predicted,
            width=width,
            height=height,
            png_base64=png_base64,
            film_png_base64=film_base64,
        )
    return _Analysis(film, inference, predicted, gradcam, png)


def _dicom_result(
    result: ResultFormat, source: bytes, runtime: ModelRuntime, analysis: _Analysis, limits: DecodeLimits
) -> bytes:
    """The result as a DICOM object in the source's study, for PACS: SC of the overlay, or an SR.

    Its inputs are bounded (the header passed the metadata limits, only a list of plain values is
    copied, the overlay is at most CXR_OVERLAY_MAX_SIDE square), so its time and memory are too.
    Whatever the builders still raise is about this upload's header: a 422, never a 500."""
    try:
        return _build_dicom_result(result, source, runtime, analysis, limits)
    except InputError:
        raise
    except Exception as exc:
        logger.warning("DICOM result not built", extra={"error_type": type(exc).__name__})
        raise InputError(
            "dicom_output_unavailable",
            "A DICOM result object could not be built from this upload's header.",
            422,
        ) from None


def _build_dicom_result(
    result: ResultFormat, source: bytes, runtime: ModelRuntime, analysis: _Analysis, limits: DecodeLimits
) -> bytes:
    card = runtime.card
    if result == "sc":
        assert analysis.overlay_png is not None
        return build_secondary_capture(
            source,
            analysis.overlay_png,
            model_name=card.name,
            model_version=card.version,
            class_name=analysis.predicted_class,
            limits=limits,
        )
    threshold = runtime.threshold
    return build_structured_report(
        source,
        probabilities={
            name: float(p)
            for name, p in zip(runtime.class_names, analysis.inference.probabilities, strict=True)
        },
        predicted_class=analysis.predicted_class,
        triage_level=runtime.triage_level(analysis.predicted_class),
        threshold=threshold.value if threshold else None,
        positive_class=threshold.positive_class if threshold else None,
        model_name=card.name,
        model_version=card.version,
        limits=limits,
    )


def _upload_policy(settings: Settings) -> UploadPolicy:
    return UploadPolicy(
        max_bytes=settings.max_upload_bytes,
        idle_timeout_s=settings.upload_idle_timeout_s,
        min_rate_bps=settings.upload_min_rate_bps,
        rate_grace_s=settings.upload_rate_grace_s,
    )


def _result_format(result: ResultFormat | None, accept: str) -> ResultFormat:
    """``?result=`` wins; otherwise ``Accept: application/dicom`` asks for the overlay as an SC."""
    if result is not None:
        return result
    return "sc" if DICOM_MEDIA_TYPE in accept.lower() else "json"


def _refuse_threshold_parameter(request: Request) -> None:
    """A caller asking for another threshold must hear no, not get the deployment's silently."""
    if any("threshold" in name.lower() for name in request.query_params):
        raise InputError(
            "invalid_request",
            "The decision threshold is set per deployment (CXR_DECISION_THRESHOLD), never per request.",
            422,
        )


def _triage(runtime: ModelRuntime, predicted_class: str) -> Triage | None:
    level = runtime.triage_level(predicted_class)
    threshold = runtime.threshold
    if level is None or threshold is None:
        return None
    return Triage(
        level="urgent" if level == "urgent" else "routine",
        positive_class=threshold.positive_class,
        threshold=threshold.value,
        validation_sensitivity=threshold.validation_sensitivity,
        validation_specificity=threshold.validation_specificity,
        meaning=f"urgent = p({threshold.positive_class}) >= {threshold.value:.4f}, routine otherwise",
    )


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
    serving: ServingDep,
    overlay: Annotated[bool, Query(description="Include the Grad-CAM overlay PNG.")] = True,
    with_film: Annotated[
        bool,
        Query(
            alias="film",
            description="Also return the bare film under the overlay (gradcam.film_png_base64), "
            "e.g. for a viewer that fades the heat map; ignored with overlay=false.",
        ),
    ] = False,
    result: Annotated[
        ResultFormat | None,
        Query(
            description="json (default); sc = the Grad-CAM overlay as a DICOM Secondary Capture; "
            "sr = a DICOM Comprehensive SR (TID 1500) with finding, probabilities, triage and model. "
            "sc and sr need a DICOM upload and return application/dicom. "
            "'Accept: application/dicom' alone means sc."
        ),
    ] = None,
) -> Any:
    _refuse_threshold_parameter(request)
    runtime, settings, metrics, limiter = serving.runtime, serving.settings, serving.metrics, serving.limiter
    wanted = _result_format(result, request.headers.get("accept", ""))
    audit = current_audit()
    audit.model_name, audit.model_version = runtime.card.name, runtime.card.version
    deadline = Deadline(settings.request_timeout_s, metrics)
    limits = settings.decode_limits()
    # The upload is read first, under its own budget (service.api.upload); the slot is taken once
    # the body is complete, so a client trickling its body holds bytes, never a prediction slot.
    stages = _Stages(metrics)
    async with serving.uploads.lease() as lease:
        with deadline.step("upload", upload_timeout), stages.time("upload"):
            data = await read_upload(request, _upload_policy(settings), lease)
        audit.note_upload(data)
        queued = time.perf_counter()
        async with serving.admission.slot(deadline):
            stages.observe("admission_wait", time.perf_counter() - queued)
            overlay_side = settings.overlay_max_side if overlay or wanted == "sc" else None
            with deadline.step("processing", processing_timeout):
                film = await stages.in_thread(
                    partial(_prepare, data, runtime, limits, overlay_side), limiter, "decode_wait", "decode"
                )
                # The upload can be tens of MB: only a DICOM result, built from its header, needs it.
                source = data if wanted != "json" else None
                del data
                if film.dicom is not None:
                    audit.sop_instance_uid = film.dicom.sop_instance_uid
                analysis, dicom_body = await _analyse(
                    film, source, wanted, runtime, limiter, stages=stages, limits=limits, with_film=with_film
                )
                del source
    _record(metrics, film, analysis)
    if dicom_body is not None:
        return Response(
            dicom_body,
            media_type=DICOM_MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="cxr-triage-{wanted}.dcm"'},
        )
    with stages.time("json"):
        return _json_response(runtime, film, analysis)


async def _analyse(
    film: _Film,
    source: bytes | None,
    wanted: ResultFormat,
    runtime: ModelRuntime,
    limiter: CapacityLimiter,
    *,
    stages: _Stages,
    limits: DecodeLimits,
    with_film: bool = False,
) -> tuple[_Analysis, bytes | None]:
    """Inference, decision and overlay of a prepared film, and the DICOM result built from ``source``."""
    # The film joins the next micro-batch, awaited without holding a thread. Cancelling this
    # await (the deadline) withdraws it from the queue if its batch has not started.
    submitted = time.perf_counter()
    inference = await asyncio.wrap_future(runtime.submit(film.tensor))
    stages.observe("batch_wait", inference.run_started - submitted)
    stages.observe("inference", inference.run_ended - inference.run_started)
    stages.observe("result_wait", time.perf_counter() - inference.run_ended)
    conclude = partial(_conclude, runtime, film, inference, stages, with_film)
    if film.overlay_background is None:
        # Without an overlay this is a threshold and a comparison: microseconds, cheaper than the
        # hop to a worker thread and back, so it runs here on the event loop.
        analysis = conclude()
    else:
        # Its own time is observed inside, split into colour_blend, png_encode and base64.
        analysis = await stages.in_thread(conclude, limiter, "overlay_wait", None)
    if source is None:
        return analysis, None
    dicom_body = await anyio.to_thread.run_sync(
        partial(_dicom_result, wanted, source, runtime, analysis, limits), limiter=limiter
    )
    return analysis, dicom_body


def _record(metrics: Metrics, film: _Film, analysis: _Analysis) -> None:
    inference = analysis.inference
    metrics.inference_duration.observe(inference.inference_ms / 1000.0)
    metrics.inference_batch_size.observe(inference.batch_size)
    metrics.predictions.labels(analysis.predicted_class).inc()
    logger.info(
        "prediction",
        extra={
            "source_format": film.source_format.value,
            "image_width": film.width,
            "image_height": film.height,
            "predicted_class": analysis.predicted_class,
            "inference_ms": round(inference.inference_ms, 3),
        },
    )


def _json_response(runtime: ModelRuntime, film: _Film, analysis: _Analysis) -> PredictionResponse:
    inference, dicom, ood = analysis.inference, film.dicom, runtime.card.ood
    return PredictionResponse(
        request_id=request_id_var.get() or "",
        model=ModelRef(name=runtime.card.name, version=runtime.card.version),
        probabilities={
            name: float(p) for name, p in zip(runtime.class_names, inference.probabilities, strict=True)
        },
        predicted_class=analysis.predicted_class,
        threshold=runtime.threshold,
        triage=_triage(runtime, analysis.predicted_class),
        out_of_distribution=None
        if ood is None or inference.ood_score is None
        else OutOfDistribution(score=inference.ood_score, threshold=ood.threshold),
        image=ImageInfo(source_format=film.source_format.value, width=film.width, height=film.height),
        dicom=None
        if dicom is None
        else DicomRef(
            study_instance_uid=dicom.study_instance_uid,
            sop_instance_uid=dicom.sop_instance_uid,
            warnings=list(dicom.warnings),
        ),
        execution_provider=runtime.provider,
        inference_ms=inference.inference_ms,
        gradcam=analysis.overlay,
    )
