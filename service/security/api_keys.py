"""API keys read from a mounted file, re-read when the file changes so keys rotate without a restart.

One key per line; ``#`` comments and blank lines are ignored::

    <key_id>:<secret>[:<scope>,<scope>...]

``key_id`` names the caller in the audit log. ``secret`` is what the caller sends: 16 to 1024
printable ASCII characters, no ':' or spaces. Scopes are ``predict`` (the /v1 API and the docs; the
default when none are given), ``metrics`` (/metrics) and ``admin`` (/v1/admin/...).

Only a SHA-256 digest of each secret is kept in memory. Errors name line numbers and what is wrong
with them, never the content: a message about a broken line must not print the secret on it.
"""

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

logger = logging.getLogger(__name__)

MIN_SECRET_CHARS = 16
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Printable ASCII except ':' (the field separator) and space.
_SECRET = re.compile(rf"[!-9;-~]{{{MIN_SECRET_CHARS},1024}}")
_MAX_FILE_BYTES = 1024 * 1024


class Scope(StrEnum):
    PREDICT = "predict"
    METRICS = "metrics"
    ADMIN = "admin"


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    digest: bytes  # sha256(secret); the secret itself is not kept
    scopes: frozenset[Scope]


class KeyFileError(ValueError):
    """The key file cannot be used; the message is safe to log (no key material)."""


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def _parse_line(number: int, line: str) -> ApiKey:
    parts = line.split(":")
    if len(parts) not in (2, 3):
        raise KeyFileError(f"line {number}: expected <key_id>:<secret>[:<scopes>]")
    key_id, secret = parts[0].strip(), parts[1].strip()
    if not _KEY_ID.fullmatch(key_id):
        raise KeyFileError(f"line {number}: key_id must be 1-64 of letters, digits, '.', '_', '-'")
    if not _SECRET.fullmatch(secret):
        raise KeyFileError(
            f"line {number} (key {key_id}): the secret must be {MIN_SECRET_CHARS}-1024 printable ASCII "
            "characters without ':' or spaces"
        )
    scopes = {Scope.PREDICT}
    if len(parts) == 3:
        names = [name.strip().lower() for name in parts[2].split(",") if name.strip()]
        unknown = sorted(set(names) - {scope.value for scope in Scope})
        if not names or unknown:
            raise KeyFileError(
                f"line {number} (key {key_id}): scopes must be a comma-separated subset of "
                f"{[scope.value for scope in Scope]}"
            )
        scopes = {Scope(name) for name in names}
    return ApiKey(key_id, _digest(secret.encode("ascii")), frozenset(scopes))


def parse_key_file(text: str) -> tuple[ApiKey, ...]:
    """Every key in ``text``, or a ``KeyFileError`` listing every bad line: a file is used whole or not."""
    keys: list[ApiKey] = []
    errors: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = _parse_line(number, line)
        except KeyFileError as exc:
            errors.append(str(exc))
            continue
        if any(key.key_id == other.key_id for other in keys):
            errors.append(f"line {number}: key_id {key.key_id} appears twice")
        elif any(key.digest == other.digest for other in keys):
            # One secret under two ids would make the audit log's caller ambiguous.
            errors.append(f"line {number} (key {key.key_id}): same secret as another key")
        else:
            keys.append(key)
    if errors:
        raise KeyFileError("; ".join(errors))
    if not keys:
        raise KeyFileError("the file holds no keys")
    return tuple(keys)


def find_key(keys: Iterable[ApiKey], presented: bytes) -> ApiKey | None:
    """The key whose secret is ``presented``, compared in constant time against every key.

    Both sides are hashed first so ``compare_digest`` always sees equal lengths, and the loop never
    stops early: the time taken says nothing about which key, or how much of one, matched.
    """
    digest = _digest(presented)
    found: ApiKey | None = None
    for key in keys:
        if hmac.compare_digest(digest, key.digest):
            found = key
    return found


def _signature(path: Path) -> tuple[int, int, int, int]:
    """What changes when the file is rewritten or a Kubernetes Secret's symlink is swapped."""
    try:
        stat = path.stat()  # follows the ..data symlink a mounted Secret is made of
    except OSError as exc:
        raise KeyFileError(f"cannot stat the file ({type(exc).__name__})") from None
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def _read(path: Path) -> tuple[ApiKey, ...]:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read the file ({type(exc).__name__})") from None
    if len(data) > _MAX_FILE_BYTES:
        raise KeyFileError(f"the file is larger than {_MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFileError("the file is not UTF-8 text") from None
    return parse_key_file(text)


class ApiKeyStore:
    """The key set in force: loaded at start-up, replaced when the file changes and parses.

    A file that disappears, cannot be read or does not parse leaves the previous keys in force and
    is logged once as a warning, so a botched rotation never locks every caller out. Used from the
    event loop only; the checks are a ``stat`` at most every ``reload_s`` seconds and a small read.
    """

    def __init__(self, path: Path, reload_s: float) -> None:
        self.path = path
        self._reload_s = reload_s
        self._signature: tuple[int, int, int, int] | None = _signature(path)
        self._keys = _read(path)
        self._checked_at = time.monotonic()

    @property
    def key_ids(self) -> list[str]:
        return [key.key_id for key in self._keys]

    def current(self) -> tuple[ApiKey, ...]:
        now = time.monotonic()
        if now - self._checked_at >= self._reload_s:
            self._checked_at = now
            self._reload_if_changed()
        return self._keys

    def _reload_if_changed(self) -> None:
        try:
            signature: tuple[int, int, int, int] | None = _signature(self.path)
        except KeyFileError as exc:
            signature = None
            if self._signature is not None:
                self._keep_previous(str(exc))
        if signature is None or signature == self._signature:
            self._signature = signature
            return
        self._signature = signature  # a broken version is reported once, not on every check
        try:
            keys = _read(self.path)
        except KeyFileError as exc:
            self._keep_previous(str(exc))
            return
        self._keys = keys
        logger.info("API keys reloaded", extra={"key_ids": self.key_ids})

    def _keep_previous(self, reason: str) -> None:
        logger.warning(
            "API key file unusable; the previous keys stay in force",
            extra={"reason": reason, "key_ids": self.key_ids},
        )
