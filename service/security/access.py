"""Who may call what: API-key authentication and per-route scopes, checked before any route runs.

A pure ASGI middleware that classifies requests by path, so every route - including routers added
later, such as /v1/admin - is covered without opting in, and an unauthenticated upload is answered
before a byte of its body is read.

- /healthz, /readyz: open (orchestrator probes);
- /ui and its static files: open - they hold no data; the page asks for a key and sends it with
  every API call it makes, which are checked like anyone else's;
- /metrics: scope ``metrics``, or open with CXR_METRICS_AUTH=disabled;
- /v1/admin and everything under it: scope ``admin``;
- everything else (/v1/predict, /v1/models, /docs, unknown paths): scope ``predict``.
"""

from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from service.errors import error_response
from service.observability.audit import current_audit
from service.observability.metrics import Metrics
from service.security.api_keys import ApiKey, ApiKeyStore, KeyFileError, find_key
from service.security.api_keys import Scope as KeyScope
from service.settings import Settings

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
UI_PREFIX = "/ui"
METRICS_PATH = "/metrics"
ADMIN_PREFIX = "/v1/admin"
REALM = 'Bearer realm="cxr-triage"'


class AccessConfigError(ValueError):
    """Access control cannot be set up from the settings; the message says what to change."""


@dataclass(frozen=True)
class AccessPolicy:
    keys: ApiKeyStore | None  # None: authentication disabled by CXR_AUTH=disabled
    metrics_open: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> "AccessPolicy":
        if settings.auth == "disabled":
            return cls(keys=None, metrics_open=True)
        if settings.api_keys_file is None:
            raise AccessConfigError(
                "CXR_AUTH=required (the default) but CXR_API_KEYS_FILE is not set: point it at a key "
                "file ('<key_id>:<secret>[:<scopes>]' per line), or set CXR_AUTH=disabled to run "
                "without authentication."
            )
        try:
            store = ApiKeyStore(settings.api_keys_file, settings.api_keys_reload_s)
        except KeyFileError as exc:
            raise AccessConfigError(f"CXR_API_KEYS_FILE={settings.api_keys_file}: {exc}") from None
        return cls(keys=store, metrics_open=settings.metrics_auth == "disabled")

    def required_scope(self, path: str) -> KeyScope | None:
        """The scope a request for ``path`` needs, or None when the route is open."""
        if self.keys is None or path in OPEN_PATHS or _is_under(path, UI_PREFIX):
            return None
        if path == METRICS_PATH:
            return None if self.metrics_open else KeyScope.METRICS
        if _is_under(path, ADMIN_PREFIX):
            return KeyScope.ADMIN
        return KeyScope.PREDICT


def _is_under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def route_path(scope: Scope) -> str:
    """The path the router matches against: without the root path a proxy may have mounted us at."""
    path = str(scope["path"])
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path


def presented_secret(scope: Scope) -> bytes | None:
    """The credential sent, None if none; ``b""`` (never a key) when it is malformed or ambiguous."""
    found: list[bytes] = []
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            found.append(token.strip() if scheme.lower() == b"bearer" else b"")
        elif name == b"x-api-key":
            found.append(value.strip())
    if not found:
        return None
    # Two different credentials (or a header twice): refuse rather than guess which one counts.
    return found[0] if len(set(found)) == 1 else b""


class AccessGuard:
    def __init__(self, app: ASGIApp, policy: AccessPolicy, metrics: Metrics) -> None:
        self.app = app
        self.policy = policy
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self.policy.keys is not None:
            # No route speaks WebSocket; should one ever be added, it must not arrive unauthenticated.
            await WebSocketClose(code=1008)(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        needed = self.policy.required_scope(route_path(scope))
        if needed is None:
            await self.app(scope, receive, send)
            return
        assert self.policy.keys is not None
        secret = presented_secret(scope)
        key: ApiKey | None = None
        if secret is not None:
            key = find_key(self.policy.keys.current(), secret)
        if key is None:
            reason = "missing_api_key" if secret is None else "invalid_api_key"
            self.metrics.auth_failures.labels(reason).inc()
            detail = (
                "Send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."
                if secret is None
                else "The API key is not valid."
            )
            challenge = REALM if secret is None else f'{REALM}, error="invalid_token"'
            response = error_response(reason, detail, 401, headers={"WWW-Authenticate": challenge})
            await response(scope, receive, send)
            return
        current_audit().key_id = key.key_id
        if needed not in key.scopes:
            self.metrics.auth_failures.labels("forbidden").inc()
            detail = f"This API key does not have the '{needed.value}' scope this route needs."
            await error_response("forbidden", detail, 403)(scope, receive, send)
            return
        await self.app(scope, receive, send)
