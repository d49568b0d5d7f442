"""The HTTP server configuration: uvicorn on h11, with header limits and protocol errors in our shape.

Why h11 and not httptools (uvicorn's default when installed): llhttp, under httptools, sets no limit
on the request head - a 1 MiB header was accepted and eight 128 MiB headers added 1 GB of RSS - and
uvicorn answers its parse errors with a plain-text 400. h11 buffers at most
``max_incomplete_event_size`` bytes of an unfinished request head and says which limit a refusal
hit (``error_status_hint``), and uvicorn's h11 protocol has one place (``send_400_response``) where
every protocol-level refusal goes out. So:

* request line + headers past ``CXR_MAX_HEADER_BYTES``: 431 ``headers_too_large`` (414
  ``uri_too_long`` when the request line alone is past it); more than ``CXR_MAX_HEADER_COUNT``
  header fields: 431 ``too_many_headers``;
* anything else h11 refuses (bad, negative, conflicting or over-long Content-Length, NUL/CR in a
  header, a non-ASCII target, a malformed request line) - and, stricter than h11, Content-Length
  together with Transfer-Encoding (request smuggling): 400 ``bad_http_request``. Content-Length
  sent twice with the same value is merged into one, as RFC 9110 section 8.6 allows;
* each answered with the service's ``{"code", "detail"}`` JSON, ``Connection: close``, and an audit
  line and a request metric like any other answer. Unknown methods parse fine and reach the app,
  which answers them 401/404/405 in the same shape;
* a request head not complete within ``CXR_REQUEST_HEAD_TIMEOUT_S`` of connecting (or of the end of
  the previous response on a kept-alive connection): 408 ``request_head_too_slow``, connection
  closed. uvicorn bounds only an idle keep-alive, and any byte resets that, so a client trickling
  header bytes would otherwise hold its socket forever (the classic slow-loris).

An answer given before the request body is read (503 ``overloaded`` when the upload budget is
spent, 413, 408 mid-upload, and any other: 401 without a key, 404, a 400 from the multipart parser)
goes out with ``Connection: close``. Closing the socket at once, with
body bytes still unread in it, makes the kernel send a reset, and a client still sending (most
send the whole body before they read; bench.http_load does) gets a broken pipe or reset instead of
the answer. So such a connection gets a *lingering close*, as nginx and Apache do: the answer is
written, our side half-closed (FIN after the answer), and the rest of the body read and dropped
until the body ends or the client closes - at most ``CXR_UPLOAD_LINGER_S`` in all,
``CXR_UPLOAD_IDLE_TIMEOUT_S`` without a byte, and as many bytes as the largest film upload
(``CXR_MAX_UPLOAD_BYTES`` + multipart room); then the socket is closed. Dropped bytes are never
buffered and count against no budget.

h11 is slower than httptools per request, which does not matter beside a model run.
"""

import asyncio
import json
import logging
import sys
import weakref
from collections.abc import Callable
from typing import Any, cast

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.api.upload import MULTIPART_OVERHEAD
from service.lifecycle.state import context_of
from service.observability.audit import AuditRecord, UidHasher, log_request
from service.observability.metrics import UNMATCHED_ROUTE, Metrics
from service.settings import Settings

logger = logging.getLogger(__name__)

_PHRASES = {
    400: b"Bad Request",
    408: b"Request Timeout",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
}
_LONG_TARGET = "request target too long"

_SMUGGLING = "Content-Length with Transfer-Encoding"


class _CheckedConnection(h11.Connection):
    """h11's connection, refusing a request head with too many fields or ambiguous framing."""

    def __init__(self, max_incomplete_event_size: int, max_header_count: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_incomplete_event_size)
        self._max_head = max_incomplete_event_size
        self.max_header_count = max_header_count

    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, h11.Request):
            # h11 limits only a head still incomplete in its buffer; one that arrived whole in a
            # single read is measured here.
            if len(event.target) > self._max_head:
                self._fail(h11.RemoteProtocolError(_LONG_TARGET, error_status_hint=414))
            if (
                len(event.target) + sum(len(name) + len(value) + 4 for name, value in event.headers)
                > self._max_head
            ):
                self._fail(h11.RemoteProtocolError("request head too large", error_status_hint=431))
            if len(event.headers) > self.max_header_count:
                self._fail(h11.RemoteProtocolError("too many header fields", error_status_hint=431))
            names = {name for name, _ in event.headers}
            if {b"content-length", b"transfer-encoding"} <= names:
                self._fail(h11.RemoteProtocolError(_SMUGGLING))
        return event

    def _fail(self, error: h11.RemoteProtocolError) -> None:
        # uvicorn catches it like h11's own and calls send_400_response, which closes the connection.
        raise error

    def send(self, event: Any) -> bytes | None:  # type: ignore[override]  # one body for h11's overloads
        if (
            isinstance(event, h11.Response)
            and self.their_state is h11.SEND_BODY
            and (b"connection", b"close") not in event.headers
        ):
            # Answered before its body was read (401, 404, 400 to a POST): uvicorn would read and
            # drop the rest for as long as bytes come, each resetting its keep-alive timer, so a
            # byte a second would hold the socket forever. Say so, and close: the lingering close.
            headers = [(name, value) for name, value in event.headers if name != b"connection"]
            event = h11.Response(
                status_code=event.status_code,
                headers=[*headers, (b"connection", b"close")],
                reason=event.reason,
                http_version=event.http_version,
            )
        data: bytes | None = super().send(event)
        return data


def _refusal(error: BaseException | None, pending: bytes, max_head: int) -> tuple[int, str, str]:
    """(status, code, detail) for a request h11 or our checks refused."""
    hint = getattr(error, "error_status_hint", 400)
    message = str(error) if isinstance(error, h11.RemoteProtocolError) else ""
    if hint == 431 and message == "too many header fields":
        return 431, "too_many_headers", "The request has too many header fields (CXR_MAX_HEADER_COUNT)."
    if hint == 414 or (hint == 431 and b"\r\n" not in pending[:max_head]):
        return (
            414,
            "uri_too_long",
            f"The request line is longer than {max_head} bytes (CXR_MAX_HEADER_BYTES).",
        )
    if hint == 431:
        return (
            431,
            "headers_too_large",
            f"The request head is larger than {max_head} bytes (CXR_MAX_HEADER_BYTES).",
        )
    if message == _SMUGGLING:
        return 400, "bad_http_request", f"Ambiguous message framing ({_SMUGGLING}) is refused."
    if hint == 501:
        # RFC 9112 suggests 501, but a client's choice must never raise a server-fault (5xx) alert.
        return 400, "unsupported_transfer_encoding", "Only Transfer-Encoding: chunked is supported."
    # h11's messages quote the offending bytes: not echoed, not logged.
    return 400, "bad_http_request", "The HTTP request is malformed (request line, header or Content-Length)."


class _CycleTransport:
    """The transport as uvicorn's request cycle sees it (it only writes, asks and closes), with
    ``close`` going through the protocol's lingering close."""

    def __init__(self, transport: asyncio.Transport, close: Callable[[], None]) -> None:
        self._transport = transport
        # Weak: protocol -> cycle -> this -> protocol would be a reference cycle, and each closed
        # connection (its request body buffer included) would wait for the garbage collector.
        self._close = weakref.WeakMethod(close)

    def close(self) -> None:
        close = self._close()
        if close is None:
            self._transport.close()
        else:
            close()

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()


def protocol_class(settings: Settings, metrics: Metrics) -> type[H11Protocol]:
    """uvicorn's h11 protocol with our limits, our JSON body on every protocol-level refusal, and a
    lingering close after an answer given before the request body was read."""
    max_head, max_count = settings.max_header_bytes, settings.max_header_count
    head_timeout = settings.request_head_timeout_s
    linger_s, linger_idle_s = settings.upload_linger_s, settings.upload_idle_timeout_s
    # The most a refused film upload could still send (a larger STOW-RS body is cut off there too).
    linger_max_bytes = settings.max_upload_bytes + MULTIPART_OVERHEAD
    hasher = UidHasher()  # the audit line of a refused request carries no UID to hash

    class JsonErrorH11Protocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.conn = _CheckedConnection(max_head, max_count)
            self._head_timer: asyncio.TimerHandle | None = None
            self._lingering = False
            self._linger_bytes = 0
            self._linger_deadline = 0.0
            self._linger_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            if self._linger_timer is not None:
                self._linger_timer.cancel()
                self._linger_timer = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._lingering:
                self._drop(data)
            else:
                super().data_received(data)

        def eof_received(self) -> None:
            if self._lingering:
                self.transport.close()  # the client has sent all it will: nothing left unread
            super().eof_received()

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and not isinstance(self.cycle.transport, _CycleTransport):
                # A request cycle was just created (its task has not run yet): its close lingers.
                self.cycle.transport = cast(asyncio.Transport, _CycleTransport(self.transport, self._close))
            if self.conn.their_state is not h11.IDLE:  # the head is complete (or refused)
                self._cancel_head_timer()

        def _close(self) -> None:
            """Close after an answer; lingering when the client is still sending its body."""
            if (
                self.conn.their_state is not h11.SEND_BODY
                or self.transport.is_closing()
                or not self.transport.can_write_eof()
            ):
                self.transport.close()
                return
            self._lingering = True
            self._linger_deadline = self.loop.time() + linger_s
            self.transport.write_eof()  # FIN once the answer is out; the client can read it all
            self.flow.resume_reading()
            self._arm_linger_timer()
            # Body bytes h11 already holds count towards its end like the rest.
            self._drop(b"")

        def _drop(self, data: bytes) -> None:
            """Read ``data`` of the refused body and drop it; close at its end or past a bound."""
            self._linger_bytes += len(data)
            if self._linger_bytes > linger_max_bytes:
                self.transport.close()
                return
            try:
                if data:  # h11 reads an empty chunk as the end of the stream
                    self.conn.receive_data(data)
                while (event := self.conn.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
                    if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                        self.transport.close()  # the body has ended: closing now resets nothing
                        return
            except h11.RemoteProtocolError:
                self.transport.close()
                return
            if data:
                self._arm_linger_timer()

        def _arm_linger_timer(self) -> None:
            if self._linger_timer is not None:
                self._linger_timer.cancel()
            wait = min(linger_idle_s, self._linger_deadline - self.loop.time())
            self._linger_timer = self.loop.call_later(max(wait, 0.0), self.transport.close)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm_head_timer()  # the next request's head gets the same time

        def _arm_head_timer(self) -> None:
            self._cancel_head_timer()
            self._head_timer = self.loop.call_later(head_timeout, self._head_too_slow)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return
            if not self.conn.trailing_data[0]:
                self.transport.close()  # nothing sent: an idle connection, closed without a word
                return
            detail = f"No whole request head within {head_timeout:g} s (CXR_REQUEST_HEAD_TIMEOUT_S)."
            self._refuse(408, "request_head_too_slow", detail)

        def send_400_response(self, msg: str) -> None:
            # Called by uvicorn inside its ``except h11.RemoteProtocolError`` block.
            self._refuse(*_refusal(sys.exc_info()[1], self.conn.trailing_data[0], max_head))

        def _refuse(self, status: int, code: str, detail: str) -> None:
            self._cancel_head_timer()
            body = json.dumps({"code": code, "detail": detail}).encode()
            head = [
                b"HTTP/1.1 %d %s" % (status, _PHRASES.get(status, b"Bad Request")),
                b"content-type: application/json",
                b"content-length: %d" % len(body),
                b"connection: close",
                b"cache-control: no-store",
                b"x-content-type-options: nosniff",
            ]
            # Written by hand: h11's state machine is in ERROR after a refused request.
            self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
            self.transport.close()
            metrics.observe_request(UNMATCHED_ROUTE, "OTHER", status, 0.0)
            log_request(
                AuditRecord(code=code),
                hasher,
                method="OTHER",
                route=UNMATCHED_ROUTE,
                status=status,
                duration_ms=0.0,
            )

    return JsonErrorH11Protocol


def uvicorn_config(
    app: FastAPI, *, host: str, port: int, log_level: str | None = None, **extra: Any
) -> uvicorn.Config:
    """The server configuration both ``python -m service`` and the tests' threaded server use."""
    context = context_of(app)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_class(context.settings, context.metrics),
        h11_max_incomplete_event_size=context.settings.max_header_bytes,
        log_config=None,  # keep the JSON handlers the process installed
        log_level=log_level,
        access_log=False,  # RequestObserver logs each request with its id
        server_header=False,
        lifespan="on",  # a lifespan failure (bad model) must stop the process, not be ignored
        **extra,
    )
