"""A lean HTTP/1.1 load generator: keep-alive connections replaying prebuilt ``POST /v1/predict``s.

On a small machine the client shares the CPUs with the service it measures, so it has to cost as
little as possible. Requests are built once as bytes; a response is read as status line, headers and
exactly Content-Length bytes of body, and only a refusal's body is parsed (for its error code). An
HTTP client library costs several times that per request, and it would be charged to the service.
"""

import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_BOUNDARY = "cxr-bench-b0undary"


def predict_request(url: str, film: bytes, headers: dict[str, str], query: str = "overlay=false") -> bytes:
    """The whole ``POST /v1/predict?<query>`` request for ``film``, ready to write to a socket."""
    host = urlsplit(url).netloc
    body = (
        (
            f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="film"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + film
        + f"\r\n--{_BOUNDARY}--\r\n".encode()
    )
    head = [
        f"POST /v1/predict?{query} HTTP/1.1",
        f"Host: {host}",
        f"Content-Type: multipart/form-data; boundary={_BOUNDARY}",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class LoadResult:
    seconds: float = 0.0  # the measured window
    latencies_ms: list[float] = field(default_factory=list)  # 200s completed inside the window
    statuses: Counter[int] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)  # non-200 answers, by error code
    transport_errors: Counter[str] = field(default_factory=Counter)

    @property
    def errors(self) -> int:
        server = sum(n for status, n in self.statuses.items() if status >= 500)
        return server + sum(self.transport_errors.values())


async def drive(
    url: str, requests: Sequence[bytes], concurrency: int, seconds: float, warmup_s: float
) -> LoadResult:
    """``concurrency`` connections send ``requests`` round-robin, back to back, for ``warmup_s`` +
    ``seconds``; only answers that arrive inside the last ``seconds`` are counted."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    result = LoadResult(seconds=seconds)
    start = time.monotonic()
    window_start, window_end = start + warmup_s, start + warmup_s + seconds
    next_request = iter(range(1 << 62))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.monotonic() < window_end:
                request = requests[next(next_request) % len(requests)]
                sent = time.monotonic()
                try:
                    writer.write(request)
                    await writer.drain()
                    status, close, body = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    if window_start <= time.monotonic() < window_end:
                        result.transport_errors[type(exc).__name__] += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                done = time.monotonic()
                if window_start <= done < window_end:
                    result.statuses[status] += 1
                    if status == 200:
                        result.latencies_ms.append((done - sent) * 1000.0)
                    else:
                        result.refusals[_error_code(status, body)] += 1
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return result


async def drive_spread(
    targets: Sequence[tuple[str, Sequence[bytes]]], concurrency: int, seconds: float, warmup_s: float
) -> LoadResult:
    """``drive`` against several services at once (each URL with its own requests), the connections
    spread evenly over them as a Kubernetes Service spreads them over its pods; one merged result."""
    shares = [concurrency // len(targets) + (i < concurrency % len(targets)) for i in range(len(targets))]
    results = await asyncio.gather(
        *(
            drive(url, requests, share, seconds, warmup_s)
            for (url, requests), share in zip(targets, shares, strict=True)
            if share
        )
    )
    merged = LoadResult(seconds=seconds)
    for result in results:
        merged.latencies_ms += result.latencies_ms
        merged.statuses += result.statuses
        merged.refusals += result.refusals
        merged.transport_errors += result.transport_errors
    return merged


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if "content-length" not in headers:
        raise ValueError("response without Content-Length")
    body = await reader.readexactly(int(headers["content-length"]))
    return status, headers.get("connection", "").lower() == "close", body


def _error_code(status: int, body: bytes) -> str:
    try:
        return str(json.loads(body).get("code", status))
    except (ValueError, AttributeError):
        return str(status)
