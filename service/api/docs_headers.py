"""Content-Security-Policy and frame protection for the interactive API docs (/docs, /redoc).

The pages are FastAPI's: HTML that loads Swagger UI or ReDoc from the jsDelivr CDN and starts it
with an inline script. The policy allows exactly that - scripts from the CDN and the page's own
inline scripts by their SHA-256 hash (computed from the page as served, so it cannot drift from
FastAPI's template), styles and fonts the two UIs load, API calls to this origin only - and forbids
framing (clickjacking) and everything else. Other routes answer JSON or DICOM, which browsers do
not execute; they keep ``nosniff`` from the request middleware.
"""

import base64
import hashlib
import re
from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)
_CDN = "https://cdn.jsdelivr.net"
_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src {scripts}",
        f"style-src 'unsafe-inline' {_CDN} https://fonts.googleapis.com",
        "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly",
        "font-src https://fonts.gstatic.com",
        "connect-src 'self'",
        "worker-src blob:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    )
)


def docs_policy(html: bytes) -> str:
    """The CSP for one docs page: the CDN plus the hash of each of its inline scripts."""
    hashes = [
        base64.b64encode(hashlib.sha256(script).digest()).decode() for script in _INLINE_SCRIPT.findall(html)
    ]
    return _POLICY.format(scripts=" ".join([_CDN, *(f"'sha256-{digest}'" for digest in hashes)]))


class DocsHeaders:
    """Pure ASGI middleware: buffers the (small) docs pages to hash their inline scripts."""

    def __init__(self, app: ASGIApp, paths: Iterable[str]) -> None:
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body = bytearray()

        async def buffered(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            headers = MutableHeaders(scope=start)
            headers["Content-Security-Policy"] = docs_policy(bytes(body))
            headers["X-Frame-Options"] = "DENY"
            headers["Referrer-Policy"] = "no-referrer"
            await send(start)
            await send({"type": "http.response.body", "body": bytes(body), "more_body": False})

        await self.app(scope, receive, buffered)
