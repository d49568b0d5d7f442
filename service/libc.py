"""Functions of the C library the service calls through ctypes (``malloc_trim``, ``prctl``).

One lookup for all of them, cached: where there is no C library to load, or it lacks the function
(musl has no ``malloc_trim``, macOS no ``prctl``), the caller gets None and does without.
"""

import ctypes
import ctypes.util
from collections.abc import Callable
from functools import cache
from typing import cast


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def libc_function(name: str) -> Callable[..., int] | None:
    """The C library's function ``name``, or None where it is not there."""
    libc = _libc()
    return None if libc is None else cast(Callable[..., int] | None, getattr(libc, name, None))
