"""Protocol-level refusals (issue 15): header limits, malformed requests, one JSON error shape.

Sent over raw sockets, since an HTTP client library will not send most of these. Each answer must be
the service's ``{"code", "detail"}`` JSON with a specific code, close the connection, be audited,
and leave the server answering. The shared live server runs the service's own server configuration
(``service.server.uvicorn_config``)."""

import base64
import contextlib
import hashlib
import json
import logging
import re
import socket

import httpx
import pytest

from service.settings import Settings
from tests.service.live import TEST_API_KEY, ThreadedServer

_AUTH = f"Authorization: Bearer {TEST_API_KEY}\r\n".encode()
_HEAD_LIMIT = Settings.model_fields["max_header_bytes"].default


def _exchange(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        with contextlib.suppress(OSError):  # the server may answer and close before all is sent
            sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def _post(extra_headers: bytes, body: bytes = b"") -> bytes:
    return b"POST /v1/predict HTTP/1.1\r\nHost: t\r\n" + _AUTH + extra_headers + b"\r\n" + body


CASES = {
    "header-1mib": (
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n",
        431,
        "headers_too_large",
    ),
    "header-count-200": (
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(200)) + b"\r\n",
        431,
        "too_many_headers",
    ),
    "url-100kb": (b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "uri_too_long"),
    "content-length-not-a-number": (_post(b"Content-Length: abc\r\n"), 400, "bad_http_request"),
    "content-length-negative": (_post(b"Content-Length: -1\r\n"), 400, "bad_http_request"),
    "content-length-1e20": (_post(b"Content-Length: 1e20\r\n"), 400, "bad_http_request"),
    "content-length-21-digits": (_post(b"Content-Length: " + b"9" * 21 + b"\r\n"), 400, "bad_http_request"),
    "content-length-twice-different": (
        _post(b"Content-Length: 4\r\nContent-Length: 5\r\n", b"abcd"),
        400,
        "bad_http_request",
    ),
    "content-length-with-transfer-encoding": (
        _post(b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
        400,
        "bad_http_request",
    ),
    "nul-in-header": (b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n", 400, "bad_http_request"),
    "cr-in-header": (b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n", 400, "bad_http_request"),
    "invalid-utf8-path": (b"GET /\xff\xfe HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad_http_request"),
    "garbage-request-line": (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        400,
        "bad_http_request",
    ),
    "transfer-encoding-gzip": (_post(b"Transfer-Encoding: gzip\r\n"), 400, "unsupported_transfer_encoding"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_protocol_error_gets_our_json_and_an_audit_line(
    name: str, live_server: ThreadedServer, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    request, status, code = CASES[name]
    with caplog.at_level(logging.INFO, logger="service.audit"):
        got_status, headers, body = _exchange(live_server.url, request)
    assert (got_status, json.loads(body)) == (status, {"code": code, "detail": json.loads(body)["detail"]})
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    audited = [r for r in caplog.records if r.name == "service.audit" and getattr(r, "code", None) == code]
    assert audited and audited[-1].__dict__["status"] == status
    assert b"\xff" not in body and b"aaaa" not in body  # nothing of the request is echoed
    assert client.get("/healthz").status_code == 200


def test_a_head_just_under_the_limit_is_served(live_server: ThreadedServer) -> None:
    padding = b"a" * (_HEAD_LIMIT - 200)
    status, _, _ = _exchange(
        live_server.url, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: " + padding + b"\r\n\r\n"
    )
    assert status == 200


@pytest.mark.parametrize("method", [b"FOO", b"PROPFIND", b"BREW"])
def test_unknown_methods_get_our_json(method: bytes, live_server: ThreadedServer) -> None:
    status, _, body = _exchange(live_server.url, method + b" /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 405
    assert json.loads(body)["code"] == "method_not_allowed"


def test_head_on_health_routes(client: httpx.Client) -> None:
    """HEAD /healthz was 405: load balancers and uptime checkers use HEAD."""
    for path in ("/healthz", "/readyz"):
        response = client.head(path)
        assert response.status_code == 200, path
        assert response.content == b""


def test_identical_content_lengths_are_merged(live_server: ThreadedServer) -> None:
    """RFC 9110 8.6 lets a server merge identical Content-Length values: one body, no ambiguity. The
    app then answers this non-multipart body in its own shape."""
    request = _post(b"Content-Length: 4\r\nContent-Length: 4\r\nContent-Type: text/plain\r\n", b"abcd")
    status, _, body = _exchange(live_server.url, request.replace(b"HTTP/1.1", b"HTTP/1.0", 1))
    assert (status, json.loads(body)["code"]) == (422, "invalid_request")


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_carry_a_csp_and_refuse_framing(path: str, client: httpx.Client) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["x-frame-options"] == "DENY"
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    # Every inline script of the page as served is allowed by its hash, and nothing else inline.
    for script in re.findall(rb"<script>(.*?)</script>", response.content, re.DOTALL):
        digest = base64.b64encode(hashlib.sha256(script).digest()).decode()
        assert f"'sha256-{digest}'" in policy
