"""OS thread names: set on the calling thread only, cut to the kernel's 15 bytes."""

import threading
from pathlib import Path

import pytest

from service.observability.threads import name_os_thread

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="no /proc (not Linux)")


def _comm(native_id: int) -> str:
    return Path(f"/proc/self/task/{native_id}/comm").read_text().strip()


def test_the_calling_thread_is_renamed_and_no_other() -> None:
    seen: dict[str, str] = {}

    def worker() -> None:
        seen["ok"] = str(name_os_thread("cxr-test-thread-with-a-long-name"))
        seen["comm"] = _comm(threading.get_native_id())

    main_before = _comm(threading.get_native_id())
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == {"ok": "True", "comm": "cxr-test-thread"}
    assert _comm(threading.get_native_id()) == main_before
