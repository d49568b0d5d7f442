"""The outermost app layer: request id, timing, metrics, the access log line, and last-resort 500s.

A pure ASGI middleware (not ``BaseHTTPMiddleware``) so streaming uploads pass through untouched.
"""

import logging
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import INTERNAL_ERROR_BODY
from service.logs import request_id_var
from service.metrics import UNMATCHED_ROUTE, Metrics, method_label

logger = logging.getLogger("service.access")

REQUEST_ID_HEADER = "X-Request-ID"
# Polled every few seconds by orchestrators and scrapers: logged at debug so they do not drown the log.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


def route_template(scope: Scope) -> str:
    """The matched route's path template ("/v1/predict"), never the raw path: bounded label values."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class RequestObserver:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Always minted here: an incoming id could carry an accession number or MRN into the logs.
        request_id = uuid.uuid4().hex
        token = request_id_var.set(request_id)
        start = time.perf_counter()
        status = 500
        response_started = False

        async def send_observed(message: Message) -> None:
            nonlocal status, response_started
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
            # Type and frames only (see service.logs); not re-raised, or uvicorn would log the message.
            logger.error("unhandled exception", exc_info=True)
            if not response_started:
                await JSONResponse(INTERNAL_ERROR_BODY, status_code=500)(scope, receive, send_observed)
        finally:
            seconds = time.perf_counter() - start
            route = route_template(scope)
            method = method_label(str(scope.get("method", "")))
            self.metrics.observe_request(route, method, status, seconds)
            level = logging.DEBUG if route in _QUIET_ROUTES and status < 400 else logging.INFO
            logger.log(
                level,
                "request",
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000.0, 2),
                },
            )
            request_id_var.reset(token)
