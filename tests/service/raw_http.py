"""Hand-made HTTP requests for what an HTTP client library will not do: send a body slowly, in parts,
or not at all, while the test watches what the server does meanwhile."""

import http.client
import socket
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from urllib.parse import urlsplit

_BOUNDARY = "raw-http-b0undary"


def multipart(data: bytes, filename: str = "film.bin") -> tuple[bytes, str]:
    """``data`` as the ``file`` part of a multipart/form-data body, and that body's Content-Type."""
    head = (
        f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{_BOUNDARY}--\r\n".encode(), f"multipart/form-data; boundary={_BOUNDARY}"


class RawUpload:
    """``POST /v1/predict`` over a plain socket: headers (with Content-Length) and as much body as asked.

    ``with RawUpload(url, data, headers, send=100) as upload: ...; upload.send_rest(); upload.response()``
    """

    def __init__(
        self, base_url: str, data: bytes, headers: Mapping[str, str], *, send: int, path: str = "/v1/predict"
    ) -> None:
        parts = urlsplit(base_url)
        self.body, content_type = multipart(data)
        self._sent = 0
        self._sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=30)
        lines = [
            f"POST {path} HTTP/1.1",
            f"Host: {parts.netloc}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(self.body)}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.send(send)

    def send(self, size: int) -> None:
        chunk = self.body[self._sent : self._sent + size]
        self._sock.sendall(chunk)
        self._sent += len(chunk)

    def send_rest(self) -> None:
        self.send(len(self.body))

    def trickle(self, interval_s: float) -> threading.Thread:
        """Send a byte every ``interval_s`` in the background until the body is out or the server hangs up."""

        def run() -> None:
            while self._sent < len(self.body):
                try:
                    self.send(1)
                except OSError:
                    return
                time.sleep(interval_s)

        thread = threading.Thread(target=run, name="trickle", daemon=True)
        thread.start()
        return thread

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (lower-cased names) and body of the server's answer."""
        reply = http.client.HTTPResponse(self._sock)
        reply.begin()
        body = reply.read()
        return reply.status, {name.lower(): value for name, value in reply.getheaders()}, body

    def hung_up(self) -> bool:
        """Whether the server has closed the socket for good: a byte sent to a closed socket is
        answered with a reset, which the next send reports. (A half-close alone - the server's FIN
        after its answer - still takes bytes.)"""
        try:
            self._sock.sendall(b"x")
            time.sleep(0.1)
            self._sock.sendall(b"x")
        except OSError:
            return True
        return False

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "RawUpload":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Poll ``condition`` until it holds: for states the server reaches asynchronously, not for speed."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
