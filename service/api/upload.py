"""Read the multipart ``file`` field under the upload's own budget, before any prediction slot is taken.

FastAPI's ``UploadFile`` parameter would buffer the whole body (spilling to a temporary file on
disk) before the endpoint runs. Parsing here instead lets the service refuse an over-limit upload
from its Content-Length before reading a byte, stop reading as soon as a chunked body passes the
limit, and keep the film in memory only - an uploaded DICOM never touches the disk.

Reading the body is waiting on the network, not work: it holds no prediction slot (a slot is taken
once the body is complete, see ``service.admission``). What bounds uploads instead:

* bytes in flight: every upload reserves its bytes (its Content-Length up front, or a chunked body
  as it arrives) from one budget shared by all requests, held until the request ends; past it,
  503 ``overloaded`` + Retry-After;
* an idle timeout: no byte for ``idle_timeout_s`` is 408 ``upload_too_slow``;
* a minimum rate: after ``rate_grace_s``, a body arriving slower on average than ``min_rate_bps``
  is 408 ``upload_too_slow`` - a client trickling a byte every two seconds is cut off within seconds;
* the request deadline (``CXR_REQUEST_TIMEOUT_S``) as before: 408 ``request_timeout``.
"""

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import anyio
from python_multipart.multipart import parse_options_header
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from service.contract import InputError
from service.inference.upload_budget import UploadLease

FILE_FIELD = "file"
# Room for boundaries and part headers around the file itself; the file is then checked exactly.
MULTIPART_OVERHEAD = 64 * 1024
MAX_PARTS = 16  # the file and at most 15 other fields; any more is a 400


@dataclass(frozen=True)
class UploadPolicy:
    max_bytes: int
    idle_timeout_s: float
    min_rate_bps: float
    rate_grace_s: float


def upload_too_large(max_bytes: int) -> InputError:
    return InputError("upload_too_large", f"The upload exceeds the limit of {max_bytes} bytes.", 413)


def _too_slow(detail: str) -> InputError:
    return InputError("upload_too_slow", detail, 408)


def _missing_file() -> InputError:
    return InputError(
        "invalid_request",
        f"Send the image as multipart/form-data with a file part named {FILE_FIELD!r}.",
        422,
    )


async def _metered(
    chunks: AsyncIterator[bytes], policy: UploadPolicy, lease: UploadLease, limit: int
) -> AsyncGenerator[bytes, None]:
    started = anyio.current_time()
    received = 0
    while True:
        try:
            with anyio.fail_after(policy.idle_timeout_s):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise _too_slow(
                f"No upload data arrived for {policy.idle_timeout_s:g} s (CXR_UPLOAD_IDLE_TIMEOUT_S)."
            ) from None
        received += len(chunk)
        if received > limit:
            raise upload_too_large(policy.max_bytes)
        lease.cover(received)
        elapsed = anyio.current_time() - started
        if elapsed > policy.rate_grace_s and received < policy.min_rate_bps * elapsed:
            raise _too_slow(
                f"The upload arrived at {received / elapsed:.0f} bytes/s, below the minimum of "
                f"{policy.min_rate_bps:.0f} (CXR_UPLOAD_MIN_RATE_BPS)."
            )
        yield chunk


class _Parser(MultiPartParser):
    """Starlette's parser, counting every part (files and fields) and noting the closing boundary
    (python-multipart calls ``on_end`` only there; a body that stops short never gets it)."""

    def __init__(self, request: Request, chunks: AsyncGenerator[bytes, None]) -> None:
        # max_fields/max_files stay as a second line behind the part count.
        super().__init__(request.headers, chunks, max_files=1, max_fields=MAX_PARTS)
        self.parts = 0
        self.closed = False

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise InputError("too_many_parts", f"The multipart body has more than {MAX_PARTS} parts.")
        super().on_part_begin()

    def on_end(self) -> None:
        self.closed = True


def _check_boundary(content_type: str) -> None:
    _, params = parse_options_header(content_type)
    if not params.get(b"boundary"):
        raise InputError(
            "multipart_boundary_missing",
            "The multipart/form-data Content-Type has no boundary (or an empty one).",
        )


async def read_upload(request: Request, policy: UploadPolicy, lease: UploadLease) -> bytes:
    """The bytes of the ``file`` part, or an ``InputError`` (413 too large, 408 too slow, 4xx
    malformed/missing) or 503 when the bytes-in-flight budget is spent."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise _missing_file()
    _check_boundary(content_type)
    body_limit = policy.max_bytes + MULTIPART_OVERHEAD
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InputError("invalid_request", "The Content-Length header is not a number.", 400)
        if int(declared) > body_limit:
            raise upload_too_large(policy.max_bytes)
        lease.cover(int(declared))
    chunks = _metered(request.stream(), policy, lease, body_limit)
    parser = _Parser(request, chunks)
    parser.spool_max_size = body_limit  # SpooledTemporaryFile stays in memory below this size
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InputError("invalid_request", f"Malformed multipart body: {exc.message}", 400) from exc
    except ClientDisconnect as exc:
        raise InputError("client_disconnected", "The client closed the connection mid-upload.", 400) from exc
    try:
        if not parser.closed:
            raise InputError(
                "multipart_truncated", "The multipart body ends before its closing boundary ('--boundary--')."
            )
        upload = form.get(FILE_FIELD)
        if upload is None or isinstance(upload, str):
            raise _missing_file()
        data = await upload.read()
    finally:
        await form.close()
    if len(data) > policy.max_bytes:
        raise upload_too_large(policy.max_bytes)
    return data
