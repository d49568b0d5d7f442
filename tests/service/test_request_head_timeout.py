"""A client that trickles its request head (the classic slow-loris) is cut off with our 408 JSON.

uvicorn bounds only an idle kept-alive connection, and any byte resets that; without the head timer
(``CXR_REQUEST_HEAD_TIMEOUT_S``, service/server.py) each trickling connection is held forever."""

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from service.main import create_app
from service.settings import Settings
from tests.service.live import ThreadedServer

HEAD_TIMEOUT_S = 1.5
# A header byte far more often than the timeout, so only a bound on the whole head can end it.
TRICKLE_EVERY_S = 0.3
# Generous: the test machine may be loaded; the point is "cut off", not "cut off on time".
GIVE_UP_AFTER_S = 30.0


@pytest.fixture(scope="module")
def server(live_settings: Settings) -> Iterator[ThreadedServer]:
    settings = live_settings.model_copy(update={"request_head_timeout_s": HEAD_TIMEOUT_S})
    with ThreadedServer(create_app(settings)) as running:
        yield running


def _connect(server: ThreadedServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=GIVE_UP_AFTER_S)


def _trickle_until_answered(sock: socket.socket, first: bytes) -> tuple[bytes, float]:
    """Send ``first``, then one header byte at a time until the server answers; (answer, seconds)."""
    started = time.monotonic()
    sock.sendall(first)
    sock.settimeout(TRICKLE_EVERY_S)
    while time.monotonic() - started < GIVE_UP_AFTER_S:
        try:
            answer = sock.recv(65536)
        except TimeoutError:
            sock.sendall(b"x")  # X-Slow: xxxx... never ends
            continue
        return answer, time.monotonic() - started
    pytest.fail(f"a trickling request head was still held after {GIVE_UP_AFTER_S} s")


def _status_and_body(answer: bytes) -> tuple[int, dict[str, str]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_a_trickling_first_head_gets_408_and_the_server_keeps_serving(server: ThreadedServer) -> None:
    with _connect(server) as sock:
        answer, _ = _trickle_until_answered(sock, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
    status, body = _status_and_body(answer)
    assert status == 408
    assert body["code"] == "request_head_too_slow"
    assert httpx.get(server.url + "/healthz", timeout=30).status_code == 200


def test_a_kept_alive_connection_gets_the_same_bound_for_its_next_head(server: ThreadedServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        first = sock.recv(65536)
        assert b" 200 " in first.split(b"\r\n", 1)[0]
        answer, _ = _trickle_until_answered(sock, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
    status, body = _status_and_body(answer)
    assert status == 408
    assert body["code"] == "request_head_too_slow"


def test_a_head_sent_whole_after_a_pause_is_served(server: ThreadedServer) -> None:
    # The timer bounds the head, not the connection: a request that arrives in time is served.
    with _connect(server) as sock:
        time.sleep(HEAD_TIMEOUT_S / 3)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        answer = sock.recv(65536)
    assert b" 200 " in answer.split(b"\r\n", 1)[0]
