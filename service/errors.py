"""The error shape every failure leaves the service in: ``{"code": ..., "detail": ...}`` JSON.

``ServiceError`` is the non-input failure any layer may raise (503 while not ready, 409 during a
reload); ``service.api.error_handlers`` turns it, and every other expected failure, into a response.
"""

from collections.abc import Mapping

from fastapi.responses import JSONResponse

INFERENCE_FAILED_BODY = {
    "code": "inference_failed",
    "detail": "The model could not process this film; the error was logged with the request id. "
    "Other requests are not affected.",
}
INTERNAL_ERROR_BODY = {
    "code": "internal_error",
    "detail": "The server failed to process the request; the error was logged with the request id.",
}


class ServiceError(Exception):
    """A non-input failure with a stable code, e.g. 503 while the model is not loaded."""

    def __init__(self, code: str, detail: str, status: int, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.status = status
        self.headers = dict(headers or {})  # e.g. Retry-After on 503


def error_response(
    code: str, detail: str, status: int, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"code": code, "detail": detail}, status_code=status, headers=headers)
