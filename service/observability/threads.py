"""OS names for the service's own threads, so ``top -H``, ``ps -L`` and ``/proc/<pid>/task/*/comm``
tell them apart (Python 3.11 names its threads for Python only; the OS sees every one as "python").
``bench.load`` reads them to split the CPU a film costs between the inference lanes, the event loop
and the other threads."""

from service.libc import libc_function

LANE_THREAD = "cxr-lane"
_PR_SET_NAME = 15  # linux/prctl.h
_MAX_NAME_BYTES = 15  # the kernel keeps 16 bytes with the terminating NUL


def name_os_thread(name: str) -> bool:
    """Give the calling thread ``name`` (cut to 15 bytes) as the OS sees it; False where it cannot."""
    prctl = libc_function("prctl")  # Linux only
    if prctl is None:
        return False
    return prctl(_PR_SET_NAME, name.encode("ascii", "replace")[:_MAX_NAME_BYTES], 0, 0, 0) == 0
