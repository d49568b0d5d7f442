"""Every error leaves the service as ``{"code": ..., "detail": ...}`` JSON with a 4xx/5xx status.

Expected failures (bad uploads, unknown routes, not ready) are turned into responses here. Unexpected
exceptions are caught one level further out, by the request middleware, so that no exception ever
reaches uvicorn's own error log, which would print its message.
"""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.contract import InputError
from service.errors import INFERENCE_FAILED_BODY, ServiceError, error_response
from service.inference.runtime import InferenceError, ModelOutputError
from service.observability.metrics import Metrics

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "upload_too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}


def _validation_detail(exc: RequestValidationError) -> str:
    # loc + msg only: the "input" member would echo client-supplied values into the response.
    parts = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{location}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "The request is invalid."


def install_exception_handlers(app: FastAPI, metrics: Metrics) -> None:
    async def on_input_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InputError)
        metrics.rejected_inputs.labels(exc.code).inc()
        # The code is enough to act on; the detail may quote header values (modality...), so it is
        # returned to the uploader but not logged.
        logger.info("input rejected", extra={"code": exc.code, "status": exc.status})
        # A body refused mid-stream leaves unread bytes on the connection: close it rather than let
        # the client go on sending into a request that is already answered.
        headers = {"Connection": "close"} if exc.status in (408, 413) else None
        return error_response(exc.code, exc.detail, exc.status, headers=headers)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        metrics.rejected_inputs.labels("invalid_request").inc()
        logger.info("input rejected", extra={"code": "invalid_request", "status": 422})
        return error_response("invalid_request", _validation_detail(exc), 422)

    async def on_service_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return error_response(exc.code, exc.detail, exc.status, headers=exc.headers)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(code, detail, exc.status_code, headers=exc.headers)

    async def on_inference_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InferenceError)
        kind = "output" if isinstance(exc, ModelOutputError) else "runtime"
        metrics.inference_errors.labels(kind).inc()
        # Type and frames only (service.observability.logs drops messages): ORT's text is about
        # tensors, but the
        # policy is that no exception message reaches the log.
        logger.error("inference failed", extra={"kind": kind}, exc_info=exc)
        return JSONResponse(INFERENCE_FAILED_BODY, status_code=500)

    app.add_exception_handler(InputError, on_input_error)
    app.add_exception_handler(InferenceError, on_inference_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(ServiceError, on_service_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
