"""The model committed in git: it loads with the service's own checks, its record matches its files,
and git tracks exactly it while locally trained versions stay out (docs/release.md)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from service.contract.model_card import CARD_FILENAME, ONNX_FILENAME
from training.release.released import RECORD_FILENAME, RELEASED_FILENAME, check_released, released_version

REPO_ROOT = Path(__file__).resolve().parents[2]
NAME_DIR = REPO_ROOT / "models" / "cxr-pneumonia"


def test_the_released_model_passes_the_services_checks_and_matches_its_record() -> None:
    card, record = check_released(NAME_DIR)  # sha256, graph contract, warm-up; every file's hash
    assert record.files[ONNX_FILENAME] == card.onnx_sha256
    assert CARD_FILENAME in record.files
    assert card.ood is not None, "the released model must refuse films unlike its training data"
    assert card.decision_threshold is not None


def test_the_record_names_the_command_data_fingerprints_and_licences() -> None:
    _, record = check_released(NAME_DIR)
    provenance = record.provenance
    assert "python -m training" in provenance.command
    for source in provenance.data:
        assert source.sha256 is not None and len(source.sha256) == 64
        assert source.files is not None and source.files > 0
        assert source.licence and source.attribution


def test_the_release_notes_sit_beside_the_model() -> None:
    version = released_version(NAME_DIR)
    assert version is not None
    notes = (NAME_DIR / version / "RELEASE.md").read_text(encoding="utf-8")
    assert version in notes and "majority baseline" in notes


def _ignored(path: str) -> bool:
    """Whether git would ignore ``path`` (tracked or not, present or not)."""
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", path], cwd=REPO_ROOT, capture_output=True, check=False
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode == 0


@pytest.mark.skipif(
    shutil.which("git") is None or not (REPO_ROOT / ".git").exists(), reason="needs git and a checkout"
)
def test_git_tracks_exactly_the_released_version() -> None:
    version = released_version(NAME_DIR)
    assert version is not None
    released = sorted(p.name for p in (NAME_DIR / version).iterdir())
    assert ONNX_FILENAME in released and RECORD_FILENAME in released
    for name in released:
        assert not _ignored(f"models/cxr-pneumonia/{version}/{name}"), name
    assert not _ignored(f"models/cxr-pneumonia/{RELEASED_FILENAME}")
    for local in (
        "20990101T000000Z/model.onnx",
        "20990101T000000Z/model_card.json",
        "ACTIVE",
        "publish_log.jsonl",
        f"{version}-int8/model.onnx",
    ):
        assert _ignored(f"models/cxr-pneumonia/{local}"), local
    assert _ignored("models/other-model/1/model.onnx")
    assert _ignored("runs/x/model.onnx")
