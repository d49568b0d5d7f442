"""Give freed heap memory back to the operating system after a burst of large films.

glibc keeps freed memory in its arenas for reuse. Numpy's large arrays are mmapped and returned
at once, but a burst of concurrent decodes also leaves many medium blocks (Pillow's image rows,
codec buffers, per-thread arenas) that glibc keeps: measured in ``reports/bench/upload-memory``, RSS
stayed hundreds of MB above its level before the burst. ``malloc_trim(0)`` walks every arena and
returns its free pages; it runs on a worker thread once the service has stayed idle (no prediction
holding or waiting for a slot) for ``CXR_TRIM_HEAP_IDLE_S``, so it never delays a request, and a
client sending films one after another does not pay for it between each of them
(``service.inference.admission``). A no-op where glibc is absent (musl, macOS).
"""

import logging

from service.libc import libc_function

logger = logging.getLogger(__name__)


def trim_heap() -> bool:
    """Return free heap pages to the OS; True if anything was released."""
    trim = libc_function("malloc_trim")
    return bool(trim(0)) if trim is not None else False
