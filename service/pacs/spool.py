"""The spool: received instances and built results on disk, each fsync'ed before anyone is told "stored".

Files are named by random tokens, never by UIDs or patient data; the directory is 0700 and each file
0600, since every film here is PHI. The byte count is kept in memory (scanned once at start) so a
full spool is noticed without walking the directory on every instance.
"""

import contextlib
import os
import secrets
import shutil
import threading
from pathlib import Path

_TMP_SUFFIX = ".part"


class SpoolFullError(RuntimeError):
    """The spool's byte budget or the disk's free space is exhausted: refuse, do not drop."""


class Spool:
    def __init__(self, root: Path, *, max_bytes: int, min_free_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)
        for leftover in root.glob(f"*{_TMP_SUFFIX}"):  # a write cut short by a crash: never acknowledged
            leftover.unlink(missing_ok=True)
        self._bytes = sum(entry.stat().st_size for entry in root.glob("*.dcm"))

    @property
    def used_bytes(self) -> int:
        return self._bytes

    def write(self, data: bytes, kind: str = "in", *, budgeted: bool = True) -> str:
        """Store ``data`` durably; returns the file's name. Raises ``SpoolFullError`` instead of storing.

        Results (``budgeted=False``) are written past the byte budget: refusing them would strand
        films already acknowledged, while refusing new intake is what the budget is for.
        """
        with self._lock:
            if budgeted and self._bytes + len(data) > self.max_bytes:
                raise SpoolFullError("the spool's byte budget (CXR_PACS_SPOOL_MAX_BYTES) is used up")
            if shutil.disk_usage(self.root).free - len(data) < self.min_free_bytes:
                raise SpoolFullError("free disk under the spool is below CXR_PACS_SPOOL_MIN_FREE_BYTES")
            self._bytes += len(data)
        name = f"{kind}-{secrets.token_hex(16)}.dcm"
        try:
            self._write_durably(name, data)
        except BaseException:
            with self._lock:
                self._bytes -= len(data)
            raise
        return name

    def _write_durably(self, name: str, data: bytes) -> None:
        partial = self.root / (name + _TMP_SUFFIX)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            partial.rename(self.root / name)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        self._sync_directory()  # the rename itself must survive a power cut

    def _sync_directory(self) -> None:
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, name: str) -> bytes:
        return (self.root / _plain(name)).read_bytes()

    def delete(self, name: str) -> None:
        path = self.root / _plain(name)
        with contextlib.suppress(FileNotFoundError):
            size = path.stat().st_size
            path.unlink()
            with self._lock:
                self._bytes -= size

    def names(self) -> set[str]:
        return {entry.name for entry in self.root.glob("*.dcm")}


def _plain(name: str) -> str:
    if Path(name).name != name or name.startswith("."):
        raise ValueError("not a spool file name")
    return name
