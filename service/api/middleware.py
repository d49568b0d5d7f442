"""The outermost app layer: request id, timing, metrics, the audit line, and last-resort 500s.

A pure ASGI middleware (not ``BaseHTTPMiddleware``) so streaming uploads pass through untouched.
"""

import json
import logging
import re
import time
import uuid
from collections.abc import Set as AbstractSet

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import INTERNAL_ERROR_BODY
from service.observability.audit import UidHasher, end_audit, log_request, start_audit
from service.observability.logs import request_id_var
from service.observability.metrics import UNMATCHED_ROUTE, Metrics, method_label
from service.security.access import route_path

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
# Polled every few seconds by orchestrators and scrapers: logged at debug so they do not drown the log.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
# Error bodies are {"code", "detail"}: the code is read back from them for the audit line, so every
# error path - ours, FastAPI's, access control's - is covered without each one reporting it.
_MAX_ERROR_BODY = 4096
_ERROR_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


def route_template(scope: Scope, known_paths: AbstractSet[str] = frozenset()) -> str:
    """The matched route's path template ("/v1/predict"), never the raw path: bounded label values."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    # Refused before routing (access control's 401/403): a path that is one of the app's own
    # parameterless routes names itself; anything else stays "unmatched", so labels stay bounded.
    requested = route_path(scope)
    return requested if requested in known_paths else UNMATCHED_ROUTE


def _error_code(body: bytes) -> str | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    code = parsed.get("code") if isinstance(parsed, dict) else None
    return code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else None


class RequestObserver:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        uid_hasher: UidHasher,
        known_paths: AbstractSet[str] = frozenset(),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.uid_hasher = uid_hasher
        self.known_paths = known_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Always minted here: an incoming id could carry an accession number or MRN into the logs.
        request_id = uuid.uuid4().hex
        token = request_id_var.set(request_id)
        record, audit_token = start_audit()
        start = time.perf_counter()
        status = 500
        response_started = False
        error_body = bytearray()

        async def send_observed(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.body" and status >= 400:
                error_body.extend(message.get("body", b"")[: _MAX_ERROR_BODY - len(error_body)])
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                # Results describe a patient's film: no proxy or browser cache may keep them.
                headers.setdefault("Cache-Control", "no-store")
                headers.setdefault("X-Content-Type-Options", "nosniff")
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except Exception:
            # Type and frames only (see service.observability.logs); not re-raised, or uvicorn would
            # log the message.
            logger.error("unhandled exception", exc_info=True)
            if not response_started:
                await JSONResponse(INTERNAL_ERROR_BODY, status_code=500)(scope, receive, send_observed)
        finally:
            seconds = time.perf_counter() - start
            route = route_template(scope, self.known_paths)
            method = method_label(str(scope.get("method", "")))
            self.metrics.observe_request(route, method, status, seconds)
            if status >= 400 and record.code is None:
                record.code = _error_code(bytes(error_body))
            log_request(
                record,
                self.uid_hasher,
                method=method,
                route=route,
                status=status,
                duration_ms=round(seconds * 1000.0, 2),
                level=logging.DEBUG if route in _QUIET_ROUTES and status < 400 else logging.INFO,
            )
            end_audit(audit_token)
            request_id_var.reset(token)
