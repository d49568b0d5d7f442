"""Logging: one JSON object per line, and nothing derived from an uploaded file.

Three rules keep protected health information (PHI) out of the logs:

* Exceptions are rendered as their type and traceback frames only. Exception messages are dropped
  everywhere - ours, pydicom's, Pillow's, uvicorn's - because a decoder's message can quote header
  bytes (a patient name) and the formatter cannot tell a safe message from an unsafe one.
* pydicom's own logger is silenced and Python warnings are logged as category + location only, for
  the same reason (pydicom warnings quote element values). Debug level applies to this service and
  uvicorn only: third-party debug output quotes file content (Pillow logs every EXIF tag's value).
* Call sites log only fields they chose: request id, route, status, timings, image size, class.
  File names, DICOM attributes and client-supplied strings are never passed to a logger.
"""

import json
import logging
import sys
import warnings
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TextIO

# Set by the request middleware; copied into worker threads by anyio, so inference logs carry it too.
request_id_var: ContextVar[str | None] = ContextVar("cxr_request_id", default=None)

_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured duplicate of msg
}
_MAX_CHAIN = 5
# A RecursionError once wrote a 100 KB line of 1,017 frames. The first and last frames say where it
# started and where it died; a line never exceeds MAX_LINE_CHARS, whatever a caller puts in it.
_HEAD_FRAMES = 8
_TAIL_FRAMES = 8
MAX_LINE_CHARS = 8192
_MAX_FIELD_CHARS = 512
_DEBUG_LOGGERS = frozenset({"service", "uvicorn"})


def _exception_chain(
    exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
) -> list[dict[str, Any]]:
    """Type and frames (file, line, function) of an exception and its causes; never ``str(exc)``."""
    chain: list[dict[str, Any]] = []
    seen: set[int] = set()
    current_type, current, current_tb = exc_type, exc, tb
    while current_type is not None and len(chain) < _MAX_CHAIN:
        frames = _capped_frames(current_tb)
        chain.append({"type": f"{current_type.__module__}.{current_type.__qualname__}", "frames": frames})
        if current is None:
            break
        seen.add(id(current))
        nxt = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        if nxt is None or id(nxt) in seen:
            break
        current_type, current, current_tb = type(nxt), nxt, nxt.__traceback__
    return chain


def _capped_frames(tb: TracebackType | None) -> list[str]:
    """The first and last frames of a traceback, walked without formatting the middle of a deep one."""
    entries: list[TracebackType] = []
    skipped = 0
    while tb is not None:
        entries.append(tb)
        if len(entries) > _HEAD_FRAMES + _TAIL_FRAMES:
            del entries[_HEAD_FRAMES]
            skipped += 1
        tb = tb.tb_next
    frames = [
        f"{t.tb_frame.f_code.co_filename}:{t.tb_lineno} in {t.tb_frame.f_code.co_name}" for t in entries
    ]
    if skipped:
        frames.insert(_HEAD_FRAMES, f"... {skipped} frames omitted ...")
    return frames


def _shortened(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _MAX_FIELD_CHARS:
        return value[:_MAX_FIELD_CHARS] + "...(truncated)"
    if isinstance(value, list | tuple):
        return [_shortened(item) for item in value[:32]]
    if isinstance(value, dict):
        return {key: _shortened(item) for key, item in list(value.items())[:32]}
    return value


def cap_line(payload: dict[str, Any]) -> str:
    """The payload as one JSON line of at most ``MAX_LINE_CHARS``: long fields are cut first, then
    everything but the fixed keys is dropped."""
    line = json.dumps(payload, default=str, ensure_ascii=False)
    if len(line) <= MAX_LINE_CHARS:
        return line
    line = json.dumps(_shortened(payload), default=str, ensure_ascii=False)
    if len(line) <= MAX_LINE_CHARS:
        return line
    kept: dict[str, Any] = {
        key: _shortened(payload[key])
        for key in ("ts", "level", "logger", "msg", "request_id")
        if key in payload
    }
    kept["truncated"] = True
    return json.dumps(kept, default=str, ensure_ascii=False)[:MAX_LINE_CHARS]


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "request_id"?, ...extra fields, "exception"?}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            payload["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            payload["exception"] = _exception_chain(*record.exc_info)
        return cap_line(payload)


class _OwnDebugOnly(logging.Filter):
    """Drop third-party records below INFO, whatever the configured level."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO or record.name.split(".")[0] in _DEBUG_LOGGERS


def _show_warning_without_message(  # noqa: PLR0917 - the warnings.showwarning signature
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    logging.getLogger("py.warnings").warning(
        "warning suppressed (message not logged)",
        extra={"category": category.__name__, "location": f"{filename}:{lineno}"},
    )


def setup_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Process-wide logging configuration for ``python -m service`` (not called by ``create_app``)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_OwnDebugOnly())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn configures its own handlers unless told otherwise; route everything through ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # The access log would duplicate our request line, minus the request id.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("pydicom").disabled = True
    # python-multipart's parse warnings quote the body byte that broke the parse ("got %r").
    # ``disabled`` is not inherited, a level is: python_multipart.multipart logs through the parent's.
    for name in ("python_multipart", "multipart"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    logging.getLogger("PIL").setLevel(logging.WARNING)  # belt and braces: its debug quotes EXIF values
    warnings.showwarning = _show_warning_without_message
