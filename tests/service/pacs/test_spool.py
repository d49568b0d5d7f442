"""The spool: private, durable, bounded."""

import stat
from pathlib import Path

import pytest

from service.pacs.spool import Spool, SpoolFullError


def test_files_are_private_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=100, min_free_bytes=0)
    name = spool.write(b"x" * 40)
    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "spool" / name).stat().st_mode) == 0o600
    assert spool.read(name) == b"x" * 40 and spool.used_bytes == 40
    assert name.startswith("in-") and name.endswith(".dcm")
    with pytest.raises(SpoolFullError):
        spool.write(b"y" * 61)
    result = spool.write(b"z" * 200, "sr", budgeted=False)  # results of acknowledged films always fit
    assert spool.used_bytes == 240
    spool.delete(name)
    spool.delete(result)
    assert spool.used_bytes == 0 and spool.names() == set()


def test_a_write_cut_short_is_discarded_at_start(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    Spool(root, max_bytes=100, min_free_bytes=0).write(b"kept")
    (root / "in-abc.dcm.part").write_bytes(b"half")
    reopened = Spool(root, max_bytes=100, min_free_bytes=0)
    assert not (root / "in-abc.dcm.part").exists() and reopened.used_bytes == 4


def test_free_disk_floor(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=10**15, min_free_bytes=10**15)
    with pytest.raises(SpoolFullError):
        spool.write(b"x")


def test_names_are_plain(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=100, min_free_bytes=0)
    with pytest.raises(ValueError, match="spool file name"):
        spool.read("../jobs.sqlite3")
