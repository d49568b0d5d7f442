"""Give freed heap memory back to the operating system after a burst of large films.

glibc keeps freed memory in its arenas for reuse. Numpy's large arrays are mmapped and returned
at once, but a burst of concurrent decodes also leaves many medium blocks (Pillow's image rows,
codec buffers, per-thread arenas) that glibc keeps: measured in ``reports/bench/upload-memory``, RSS
stayed hundreds of MB above its level before the burst. ``malloc_trim(0)`` walks every arena and
returns its free pages; it runs on a worker thread whenever the service falls idle (no prediction
holding or waiting for a slot), so it never delays a request. A no-op where glibc is absent (musl,
macOS).
"""

import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from functools import cache

logger = logging.getLogger(__name__)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


def trim_heap() -> bool:
    """Return free heap pages to the OS; True if anything was released."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
