"""Read the multipart ``file`` field with the size limit enforced while the bytes arrive.

FastAPI's ``UploadFile`` parameter would buffer the whole body (spilling to a temporary file on
disk) before the endpoint runs. Parsing here instead lets the service refuse an over-limit upload
from its Content-Length before reading a byte, stop reading as soon as a chunked body passes the
limit, and keep the film in memory only - an uploaded DICOM never touches the disk.
"""

from collections.abc import AsyncGenerator, AsyncIterator

from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from service.contract import InputError

FILE_FIELD = "file"
# Room for boundaries and part headers around the file itself; the file is then checked exactly.
MULTIPART_OVERHEAD = 64 * 1024
_MAX_FIELDS = 16


def upload_too_large(max_bytes: int) -> InputError:
    return InputError("upload_too_large", f"The upload exceeds the limit of {max_bytes} bytes.", 413)


def _missing_file() -> InputError:
    return InputError(
        "invalid_request",
        f"Send the image as multipart/form-data with a file part named {FILE_FIELD!r}.",
        422,
    )


async def _limited(chunks: AsyncIterator[bytes], limit: int, max_bytes: int) -> AsyncGenerator[bytes, None]:
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > limit:
            raise upload_too_large(max_bytes)
        yield chunk


async def read_upload(request: Request, max_bytes: int) -> bytes:
    """The bytes of the ``file`` part, or an ``InputError`` (413 too large, 4xx malformed/missing)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise _missing_file()
    body_limit = max_bytes + MULTIPART_OVERHEAD
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InputError("invalid_request", "The Content-Length header is not a number.", 400)
        if int(declared) > body_limit:
            raise upload_too_large(max_bytes)
    chunks = _limited(request.stream(), body_limit, max_bytes)
    parser = MultiPartParser(request.headers, chunks, max_files=1, max_fields=_MAX_FIELDS)
    parser.spool_max_size = body_limit  # SpooledTemporaryFile stays in memory below this size
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InputError("invalid_request", f"Malformed multipart body: {exc.message}", 400) from exc
    except ClientDisconnect as exc:
        raise InputError("client_disconnected", "The client closed the connection mid-upload.", 400) from exc
    try:
        upload = form.get(FILE_FIELD)
        if upload is None or isinstance(upload, str):
            raise _missing_file()
        data = await upload.read()
    finally:
        await form.close()
    if len(data) > max_bytes:
        raise upload_too_large(max_bytes)
    return data
