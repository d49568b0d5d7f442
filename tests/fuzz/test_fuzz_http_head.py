"""Property-based fuzzing of the HTTP request head against the real server (issue 15): header
floods (many fields, long fields, one huge field), odd bytes in names and values, and hostile
Content-Length / Transfer-Encoding combinations. Whatever arrives, the answer is the service's
JSON ``{code, detail}`` (or a success), never a 5xx or a dropped connection, and the server keeps
answering. Runs against the service's own server configuration (``service.server``)."""

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.main import create_app
from service.settings import Settings
from tests.service.live import ThreadedServer, write_api_keys

_KEY = "fuzz-key-0123456789abcdef"
_NAME = st.binary(min_size=1, max_size=24).filter(lambda name: b":" not in name and b"\r\n" not in name)
_VALUE = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda n: b"a" * n, st.integers(0, 40_000)),
    st.sampled_from([b"-1", b"1e20", b"9" * 21, b"4, 5", b"chunked", b"gzip", b"\x00", b"a\rb"]),
)
_FRAMING = st.lists(st.tuples(st.sampled_from([b"Content-Length", b"Transfer-Encoding"]), _VALUE), max_size=3)


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    keys = write_api_keys(tmp_path_factory.mktemp("fuzz-keys") / "keys", f"fuzz:{_KEY}:predict")
    settings = Settings(model_dir=tiny_model_dir, api_keys_file=keys, execution_provider="cpu")
    with ThreadedServer(create_app(settings)) as running:
        yield running


def _exchange(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        with contextlib.suppress(OSError):  # answered and closed before everything was sent
            sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from([b"/healthz", b"/v1/predict", b"/nope"]),
    method=st.sampled_from([b"GET", b"POST", b"HEAD", b"FOO"]),
    flood=st.integers(0, 300),
    headers=st.lists(st.tuples(_NAME, _VALUE), max_size=6),
    framing=_FRAMING,
)
def test_any_request_head_gets_an_answer_in_our_shape(
    server: ThreadedServer,
    *,
    path: bytes,
    method: bytes,
    flood: int,
    headers: list[tuple[bytes, bytes]],
    framing: list[tuple[bytes, bytes]],
) -> None:
    lines = [method + b" " + path + b" HTTP/1.1", b"Host: fuzz", f"Authorization: Bearer {_KEY}".encode()]
    lines += [b"X-Flood-%d: x" % i for i in range(flood)]
    lines += [name + b": " + value for name, value in [*headers, *framing]]
    raw = _exchange(server.url, b"\r\n".join(lines) + b"\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 "), raw[:200]
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert status < 500, raw[:500]
    if status >= 400 and method != b"HEAD":
        answer = json.loads(body[: body.index(b"}") + 1] if b"}" in body else body)
        assert set(answer) == {"code", "detail"} and answer["code"], answer
    health = _exchange(server.url, b"GET /healthz HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n")
    assert health.startswith(b"HTTP/1.1 200"), health[:200]
