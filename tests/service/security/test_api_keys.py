"""The key file: its format, constant-time lookup, and rotation by rewriting the file."""

import logging
import os
from pathlib import Path

import pytest

from service.security.api_keys import ApiKeyStore, KeyFileError, Scope, find_key, parse_key_file
from tests.service.live import write_api_keys

SECRET_A = "a-secret-for-pacs-0000"
SECRET_B = "b-secret-for-prometheus-1111"
SECRET_C = "c-secret-after-rotation-2222"


def test_lines_scopes_comments_and_blank_lines() -> None:
    keys = parse_key_file(
        f"# mounted from the cxr-api-keys Secret\n\npacs:{SECRET_A}\r\n"
        f"  prom:{SECRET_B}:metrics \nops:{SECRET_C}:predict, Admin\n"
    )
    assert [(key.key_id, set(key.scopes)) for key in keys] == [
        ("pacs", {Scope.PREDICT}),  # no scopes given: predict only
        ("prom", {Scope.METRICS}),
        ("ops", {Scope.PREDICT, Scope.ADMIN}),
    ]
    assert all(SECRET_A.encode() not in key.digest for key in keys)  # only digests are kept


def test_find_key_matches_the_whole_secret_only() -> None:
    keys = parse_key_file(f"pacs:{SECRET_A}\nprom:{SECRET_B}:metrics\n")
    found = find_key(keys, SECRET_B.encode())
    assert found is not None and found.key_id == "prom"
    for wrong in (SECRET_B[:-1], SECRET_B + "x", "", SECRET_B.upper(), f"Bearer {SECRET_B}"):
        assert find_key(keys, wrong.encode()) is None


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "no keys"),
        ("# only a comment\n", "no keys"),
        (f"{SECRET_A}\n", "line 1: expected"),
        (f"pacs:{SECRET_A}:predict:extra\n", "line 1: expected"),
        ("pacs:short\n", "line 1 (key pacs): the secret must be"),
        (f"pacs:{SECRET_A} with spaces\n", "line 1 (key pacs): the secret must be"),
        (f"bad id:{SECRET_A}\n", "line 1: key_id"),
        (f"pacs:{SECRET_A}:read\n", "line 1 (key pacs): scopes"),
        (f"pacs:{SECRET_A}:\n", "line 1 (key pacs): scopes"),
        (f"pacs:{SECRET_A}\npacs:{SECRET_B}\n", "line 2: key_id pacs appears twice"),
        (f"pacs:{SECRET_A}\nris:{SECRET_A}\n", "line 2 (key ris): same secret"),
        (f"pacs:{SECRET_A}\n\nris:x\n", "line 3"),
    ],
)
def test_a_bad_file_is_refused_whole_and_the_message_holds_no_secret(text: str, complaint: str) -> None:
    with pytest.raises(KeyFileError) as info:
        parse_key_file(text)
    assert complaint in str(info.value)
    assert SECRET_A not in str(info.value) and "short" not in str(info.value)


def _rewrite(path: Path, *lines: str) -> None:
    write_api_keys(path, *lines)
    # Same-second rewrites of equal size must still be seen: the check includes the mtime in ns.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def test_rotation_replaces_the_keys_and_a_broken_file_keeps_the_last_good_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_api_keys(tmp_path / "api_keys", f"pacs:{SECRET_A}")
    store = ApiKeyStore(path, reload_s=0.0)
    assert store.key_ids == ["pacs"]

    _rewrite(path, f"pacs-2026:{SECRET_C}", f"prom:{SECRET_B}:metrics")
    assert [key.key_id for key in store.current()] == ["pacs-2026", "prom"]
    assert find_key(store.current(), SECRET_A.encode()) is None  # the old key is gone at once

    with caplog.at_level(logging.WARNING, logger="service.security.api_keys"):
        _rewrite(path, f"pacs-2026:{SECRET_C}", "broken line without a secret")
        assert store.key_ids == ["pacs-2026", "prom"] == [key.key_id for key in store.current()]
        store.current()  # the same broken file is reported once, not on every check
        path.unlink()
        assert [key.key_id for key in store.current()] == ["pacs-2026", "prom"]
    warnings = [record for record in caplog.records if record.name == "service.security.api_keys"]
    assert [record.levelno for record in warnings] == [logging.WARNING, logging.WARNING]
    assert "line 3" in warnings[0].__dict__["reason"]  # line 1 is write_api_keys' comment
    assert "cannot stat" in warnings[1].__dict__["reason"]
    logged = " ".join(str(record.__dict__) for record in caplog.records)
    assert SECRET_C not in logged and "broken line" not in logged

    write_api_keys(path, f"ops:{SECRET_A}:admin")  # the file comes back: used again
    assert [(key.key_id, set(key.scopes)) for key in store.current()] == [("ops", {Scope.ADMIN})]


def test_the_file_is_checked_at_most_every_reload_interval(tmp_path: Path) -> None:
    path = write_api_keys(tmp_path / "api_keys", f"pacs:{SECRET_A}")
    store = ApiKeyStore(path, reload_s=3600.0)
    _rewrite(path, f"ris:{SECRET_B}")
    assert store.key_ids == ["pacs"] == [key.key_id for key in store.current()]


def test_a_missing_or_unreadable_file_stops_the_store_from_starting(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot stat"):
        ApiKeyStore(tmp_path / "absent", reload_s=1.0)
    (tmp_path / "latin1").write_bytes(b"pacs:\xe9" + SECRET_A.encode() + b"\n")
    with pytest.raises(KeyFileError, match="not UTF-8"):
        ApiKeyStore(tmp_path / "latin1", reload_s=1.0)
