"""The store's active-version pointer: ``<store>/<name>/ACTIVE`` names the version to serve.

The file holds one line, the version folder's name. ``python -m training publish`` and ``activate``
write it; a service with ``CXR_MODEL_VERSION=active`` reads it at start-up, on a reload and, with
``CXR_MODEL_WATCH_S``, on every poll. Moving the pointer is how a version is rolled out or back:
version folders themselves never change.

It is replaced, never edited in place: the new name goes to a temporary file in the same folder,
is fsynced, and is renamed over the old pointer. A reader therefore sees the old name or the new
one, never a torn line, and after a crash the disk holds one of the two.
"""

import contextlib
import os
import tempfile
from pathlib import Path

from service.contract.model_card import CARD_FILENAME
from service.settings import SPECIAL_VERSIONS, is_plain_name

ACTIVE_FILENAME = "ACTIVE"
# A version name is short; anything longer is not a pointer, and is not read whole into memory.
_MAX_POINTER_BYTES = 256
_SHOWN_CHARACTERS = 60


class PointerError(ValueError):
    """The pointer cannot be read or does not hold a version name; the message says which."""


class NoPointerError(PointerError):
    """There is no pointer file: no version has been published or activated yet."""


def pointer_path(name_dir: Path) -> Path:
    return name_dir / ACTIVE_FILENAME


def is_version_name(value: str) -> bool:
    """A folder name a version may have: plain, and not one of CXR_MODEL_VERSION's special words."""
    return is_plain_name(value) and value not in SPECIAL_VERSIONS


def read_active(name_dir: Path) -> str:
    """The version the pointer names; ``PointerError`` if it is missing, unreadable or garbled.

    Whether that version exists is the caller's question: the answer may change at any time.
    """
    path = pointer_path(name_dir)
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_POINTER_BYTES + 1)
    except FileNotFoundError:
        raise NoPointerError(
            f"the active-version pointer {path} does not exist: no version has been published yet "
            "(python -m training publish / activate), or CXR_MODEL_STORE/CXR_MODEL_NAME point elsewhere"
        ) from None
    except OSError as exc:
        raise PointerError(f"the active-version pointer {path} cannot be read ({exc.strerror})") from None
    if len(raw) > _MAX_POINTER_BYTES:
        raise PointerError(f"the active-version pointer {path} is longer than a version name")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise PointerError(f"the active-version pointer {path} is not ASCII text") from None
    # One line, with or without its newline; blank lines, a second name or stray spaces are garbled.
    version = text.removesuffix("\n")
    if not is_version_name(version):
        shown = version if len(version) <= _SHOWN_CHARACTERS else version[:_SHOWN_CHARACTERS] + "..."
        raise PointerError(
            f"the active-version pointer {path} holds {shown!r}, which is not one version folder name "
            "(one line: letters, digits, '.', '_', '-'); set it with python -m training activate"
        )
    return version


def write_active(name_dir: Path, version: str) -> Path:
    """Point ``name_dir``'s ACTIVE at ``version`` atomically; returns the pointer's path.

    Only checks that the version folder holds a model card: verifying the model is the caller's job
    (``training.release.publish`` loads it exactly as the service would before calling this).
    """
    if not is_version_name(version):
        raise PointerError(f"{version!r} is not a version folder name")
    if not (name_dir / version / CARD_FILENAME).is_file():
        raise PointerError(f"{name_dir / version} is not a version folder (no {CARD_FILENAME})")
    path = pointer_path(name_dir)
    # Hidden, like export's staging folders, so nothing listing versions ever mistakes it for one.
    descriptor, temporary = tempfile.mkstemp(dir=name_dir, prefix=f".{ACTIVE_FILENAME}-", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(f"{version}\n")
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file private; the service may run as another user that must read it.
        Path(temporary).chmod(0o644)
        Path(temporary).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(temporary).unlink()
        raise
    _fsync_directory(name_dir)
    return path


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable: without it a crash can bring the old pointer back."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
