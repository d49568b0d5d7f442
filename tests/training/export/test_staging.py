"""A store version appears whole, in one rename, or not at all."""

import stat
from pathlib import Path

import pytest

from training.export.staging import check_free, sha256_file, staged_version


def test_a_complete_version_is_renamed_into_place_readable_by_others(tmp_path: Path) -> None:
    target = tmp_path / "cxr" / "7"
    with staged_version(target) as staging:
        (staging / "model.onnx").write_bytes(b"graph")
        assert staging.parent == target.parent and staging.name.startswith(".7-")
        assert not target.exists()
    assert (target / "model.onnx").read_bytes() == b"graph"
    assert stat.S_IMODE(target.stat().st_mode) == 0o755  # the service may run as another user
    assert [p.name for p in target.parent.iterdir()] == ["7"]


def test_a_failure_while_writing_leaves_nothing_in_the_store(tmp_path: Path) -> None:
    target = tmp_path / "cxr" / "7"
    with pytest.raises(RuntimeError, match="export failed"), staged_version(target) as staging:
        (staging / "model.onnx").write_bytes(b"half")
        raise RuntimeError("export failed")
    assert list(target.parent.iterdir()) == []


def test_an_existing_version_is_refused_before_any_work(tmp_path: Path) -> None:
    target = tmp_path / "cxr" / "7"
    target.mkdir(parents=True)
    (target / "model.onnx").write_bytes(b"kept")
    with pytest.raises(FileExistsError, match="immutable"):
        check_free(target)
    with pytest.raises(FileExistsError, match="immutable"), staged_version(target):
        pass
    assert (target / "model.onnx").read_bytes() == b"kept"


def test_sha256_file_matches_the_known_digest(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
