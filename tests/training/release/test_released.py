"""The release step (training.release.released): verify, copy, replace the previous release, rewrite the
ignore files so git tracks exactly the released version; refuse what the service would not load or
what has no provenance. Real tiny models exported by the training package, a real git for ignores."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from service.contract.model_card import CARD_FILENAME, ONNX_FILENAME
from training.release.released import (
    BLOCK_BEGIN,
    NOTES_FILENAME,
    RECORD_FILENAME,
    RELEASED_FILENAME,
    DataSource,
    Provenance,
    ReleaseError,
    check_released,
    fingerprint_folder,
    release,
    released_version,
)

NAME = "cxr-pneumonia"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A project root as a fresh clone has it: the project's own ignore files, a models/ store."""
    root = tmp_path / "project"
    (root / "models").mkdir(parents=True)
    (root / ".gitignore").write_text("models/*\n!models/README.md\n*.onnx\n", encoding="utf-8")
    (root / ".dockerignore").write_text("*\n!service/\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def candidates(tiny_run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training store outside the project holding versions 1 and 2 of the tiny model."""
    from training.export.exporter import export_run

    store = tmp_path_factory.mktemp("trained")
    for version in ("1", "2"):
        export_run(tiny_run_dir, store, NAME, version, ood=False)
    return store / NAME


def provenance(data: Path) -> Provenance:
    return Provenance(
        command="python -m training run --data tiny",
        data=[DataSource(name="tiny", path=str(data), licence="CC BY 4.0", attribution="synthetic, in code")],
        figures={"per_source": {"tiny": {"auc": 1.0}}},
    )


def test_a_release_copies_verifies_records_and_points_at_the_version(
    repo: Path, candidates: Path, tiny_dataset: Path
) -> None:
    target = release(candidates / "1", repo / "models", provenance(tiny_dataset), repo_root=repo)
    assert target == repo / "models" / NAME / "1"
    assert released_version(repo / "models" / NAME) == "1"
    card, record = check_released(repo / "models" / NAME)
    assert record.files[ONNX_FILENAME] == card.onnx_sha256
    assert (target / ONNX_FILENAME).read_bytes() == (candidates / "1" / ONNX_FILENAME).read_bytes()
    files, digest = fingerprint_folder(tiny_dataset)
    assert (record.provenance.data[0].files, record.provenance.data[0].sha256) == (files, digest)
    assert "CC BY 4.0" in (target / NOTES_FILENAME).read_text(encoding="utf-8")


def test_a_new_release_replaces_the_previous_one(repo: Path, candidates: Path, tiny_dataset: Path) -> None:
    release(candidates / "1", repo / "models", provenance(tiny_dataset), repo_root=repo)
    release(candidates / "2", repo / "models", provenance(tiny_dataset), repo_root=repo)
    name_dir = repo / "models" / NAME
    assert released_version(name_dir) == "2"
    assert not (name_dir / "1").exists()
    for ignore_file in (".gitignore", ".dockerignore"):
        text = (repo / ignore_file).read_text(encoding="utf-8")
        assert text.count(BLOCK_BEGIN) == 1
        assert f"models/{NAME}/2/" in text and f"models/{NAME}/1/" not in text


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_then_tracks_exactly_the_released_version(
    repo: Path, candidates: Path, tiny_dataset: Path
) -> None:
    name_dir = repo / "models" / NAME
    (name_dir / "20990101T000000Z").mkdir(parents=True)  # a locally trained version
    (name_dir / "20990101T000000Z" / ONNX_FILENAME).write_bytes(b"local")
    (name_dir / "ACTIVE").write_text("20990101T000000Z\n", encoding="utf-8")
    release(candidates / "2", repo / "models", provenance(tiny_dataset), repo_root=repo)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    listed = subprocess.run(["git", "ls-files"], cwd=repo, check=True, capture_output=True, text=True).stdout
    tracked = sorted(line for line in listed.splitlines() if line.startswith("models/"))
    expected = [f"models/{NAME}/2/{p.name}" for p in (name_dir / "2").iterdir()] + [f"models/{NAME}/RELEASED"]
    assert tracked == sorted(expected)
    assert f"models/{NAME}/2/{ONNX_FILENAME}" in tracked  # despite the project-wide *.onnx rule


def test_a_candidate_the_service_would_refuse_is_not_released(
    repo: Path, candidates: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    release(candidates / "1", repo / "models", provenance(tiny_dataset), repo_root=repo)
    before = (repo / ".gitignore").read_text(encoding="utf-8")
    tampered = tmp_path / "store" / NAME / "2"
    shutil.copytree(candidates / "2", tampered)
    with (tampered / ONNX_FILENAME).open("ab") as handle:
        handle.write(b"\0")  # no longer the bytes the card's sha256 names
    with pytest.raises(ReleaseError, match="sha256"):
        release(tampered, repo / "models", provenance(tiny_dataset), repo_root=repo)
    assert released_version(repo / "models" / NAME) == "1"
    assert (repo / ".gitignore").read_text(encoding="utf-8") == before
    assert not (repo / "models" / NAME / "2").exists()


def test_a_card_for_another_version_than_its_folder_is_refused(
    repo: Path, candidates: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    renamed = tmp_path / "store" / NAME / "7"
    shutil.copytree(candidates / "2", renamed)
    with pytest.raises(ReleaseError, match="not 7"):
        release(renamed, repo / "models", provenance(tiny_dataset), repo_root=repo)
    assert released_version(repo / "models" / NAME) is None


def test_data_without_a_fingerprint_or_its_folder_is_refused(
    repo: Path, candidates: Path, tmp_path: Path
) -> None:
    with pytest.raises(ReleaseError, match="no fingerprint"):
        release(candidates / "1", repo / "models", provenance(tmp_path / "absent"), repo_root=repo)
    assert not (repo / "models" / NAME / "1").exists()


def test_a_licence_is_required() -> None:
    with pytest.raises(ValueError, match="licence"):
        DataSource.model_validate({"name": "x", "path": "x", "licence": "", "attribution": "someone"})


def test_a_changed_released_file_is_noticed(repo: Path, candidates: Path, tiny_dataset: Path) -> None:
    target = release(candidates / "1", repo / "models", provenance(tiny_dataset), repo_root=repo)
    card = json.loads((target / CARD_FILENAME).read_text(encoding="utf-8"))
    record = json.loads((target / RECORD_FILENAME).read_text(encoding="utf-8"))
    record["files"]["training_config.yaml"] = "0" * 64
    (target / RECORD_FILENAME).write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(ReleaseError, match="differs from its sha256"):
        check_released(repo / "models" / NAME)
    assert card["version"] == "1"


def test_nothing_released_is_reported(repo: Path) -> None:
    (repo / "models" / NAME).mkdir()
    assert released_version(repo / "models" / NAME) is None
    with pytest.raises(ReleaseError, match=RELEASED_FILENAME):
        check_released(repo / "models" / NAME)


def test_the_command_line_releases_or_refuses_with_its_exit_status(
    repo: Path, candidates: Path, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.cli import EXIT_REFUSED, main

    provenance_file = tmp_path / "provenance.json"
    provenance_file.write_text(provenance(tiny_dataset).model_dump_json(), encoding="utf-8")
    common = [
        "release",
        "--provenance",
        str(provenance_file),
        "--models",
        str(repo / "models"),
        "--repo",
        str(repo),
    ]
    assert main([*common, "--model", str(candidates / "2")]) == 0
    assert "RELEASED" in capsys.readouterr().out
    assert main([*common, "--model", str(tmp_path / "nowhere" / NAME / "3")]) == EXIT_REFUSED
    assert "REFUSED" in capsys.readouterr().err
    assert released_version(repo / "models" / NAME) == "2"
