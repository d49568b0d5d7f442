"""Writing a new store version: one hidden staging folder, renamed into place when complete.

Export and quantisation both write versions through ``staged_version``, so the service (which skips
hidden folders) never sees a half-written one, and versions stay immutable.
"""

import hashlib
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service.contract import ModelCard
from service.contract.model_card import CARD_FILENAME


def check_free(target: Path) -> None:
    """Refuse an existing version folder early, before any work: versions are immutable."""
    if target.exists():
        raise FileExistsError(f"{target} already exists; versions are immutable")


@contextmanager
def staged_version(target: Path) -> Iterator[Path]:
    """A staging folder beside ``target``; on a clean exit it becomes ``target`` in one rename.

    ``TemporaryDirectory`` creates the folder 0700; the service may run as another user (the
    container's uid 10001 reading a store written by a training job), so it is opened up first. On
    an exception the staging folder is removed and nothing appears in the store.
    """
    check_free(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as staging_name:
        staging = Path(staging_name)
        yield staging
        staging.chmod(0o755)
        staging.rename(target)


def write_card(staging: Path, card: ModelCard) -> None:
    (staging / CARD_FILENAME).write_text(card.model_dump_json(indent=2))


def git_commit() -> str | None:
    """The commit the exporting code came from, ``-dirty`` if tracked files differ; None outside git."""
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
