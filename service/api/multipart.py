"""``multipart/related`` bodies (STOW-RS, PS3.18 10.5): split into parts, each with its headers.

Starlette parses multipart/form-data only; a related body is simple enough to split by hand, and
binary-safe: parts are cut at the boundary delimiter, never decoded as text.
"""

import re
from dataclasses import dataclass

from service.contract import InputError

_PARAM = re.compile(r';\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')


@dataclass(frozen=True)
class Part:
    content_type: str  # lower case, parameters dropped
    body: bytes


def media_type(header: str) -> tuple[str, dict[str, str]]:
    """``type/subtype`` (lower case) and its parameters (names lower case, values unquoted)."""
    kind = header.split(";", 1)[0].strip().lower()
    params = {name.lower(): value.strip('"') for name, value in _PARAM.findall(header)}
    return kind, params


def split_related(body: bytes, boundary: str, max_parts: int) -> list[Part]:
    """The parts of a multipart body, or InputError(400) when it is not one."""
    if not boundary or len(boundary) > 70:
        raise InputError(
            "invalid_request", "The multipart boundary is missing or longer than 70 characters.", 400
        )
    delimiter = b"--" + boundary.encode("latin-1")
    start = body.find(delimiter)
    if start < 0 or (start > 0 and body[start - 2 : start] != b"\r\n"):
        raise InputError("invalid_request", "The body does not start with the multipart boundary.", 400)
    parts: list[Part] = []
    position = start + len(delimiter)
    while True:
        if body[position : position + 2] == b"--":
            return parts
        if body[position : position + 2] != b"\r\n":
            raise InputError("invalid_request", "Malformed multipart boundary line.", 400)
        end = body.find(b"\r\n" + delimiter, position)
        if end < 0:
            raise InputError("invalid_request", "The multipart body ends without its closing boundary.", 400)
        parts.append(_part(body[position + 2 : end]))
        if len(parts) > max_parts:
            raise InputError("too_many_instances", f"More than {max_parts} instances in one request.", 413)
        position = end + 2 + len(delimiter)


def _part(raw: bytes) -> Part:
    head, separator, content = raw.partition(b"\r\n\r\n")
    if not separator:
        if raw.startswith(b"\r\n"):  # no headers at all
            return Part("text/plain", raw[2:])
        raise InputError("invalid_request", "A multipart part has no header/body separator.", 400)
    content_type = "text/plain"  # RFC 2046's default
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-type":
            content_type = media_type(value.decode("latin-1"))[0]
    return Part(content_type, content)
