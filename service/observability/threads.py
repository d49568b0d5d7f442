"""OS names for the service's own threads, so ``top -H``, ``ps -L`` and ``/proc/<pid>/task/*/comm``
tell them apart (Python 3.11 names its threads for Python only; the OS sees every one as "python").
``bench.load`` reads them to split the CPU a film costs between the inference lanes, the event loop
and the other threads."""

import ctypes
import ctypes.util
import sys
from collections.abc import Callable
from functools import cache

LANE_THREAD = "cxr-lane"
_PR_SET_NAME = 15  # linux/prctl.h
_MAX_NAME_BYTES = 15  # the kernel keeps 16 bytes with the terminating NUL


@cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(name, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


def name_os_thread(name: str) -> bool:
    """Give the calling thread ``name`` (cut to 15 bytes) as the OS sees it; False where it cannot."""
    prctl = _prctl()
    if prctl is None:
        return False
    return prctl(_PR_SET_NAME, name.encode("ascii", "replace")[:_MAX_NAME_BYTES], 0, 0, 0) == 0
