"""``make audit``'s verdicts on pip-audit reports (the JSON pip-audit 2.x writes with ``-f json``),
and the lock file it audits."""

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from scripts.audit_dependencies import SKIPPED, judge, main

REPO_ROOT = Path(__file__).resolve().parents[2]
NOT_FOUND = "Dependency not found on PyPI and could not be audited: {} ({})"


def _skipped(name: str, version: str) -> dict[str, Any]:
    return {"name": name, "skip_reason": NOT_FOUND.format(name, version)}


def test_clean_report_passes_and_names_what_it_could_not_audit() -> None:
    report = {
        "dependencies": [
            {"name": "numpy", "version": "2.4.6", "vulns": []},
            {"name": "pillow", "version": "13.0.0", "vulns": []},
            _skipped("private-wheel", "0.1"),
        ],
        "fixes": [],
    }
    verdict = judge(report)
    assert verdict.status == "clean"
    assert "2 packages audited" in verdict.lines[0]
    assert "private-wheel" in verdict.lines[1]


def test_any_vulnerability_fails_with_its_id_and_fix() -> None:
    report = {
        "dependencies": [
            {"name": "numpy", "version": "2.4.6", "vulns": []},
            {
                "name": "pillow",
                "version": "9.0.0",
                "vulns": [{"id": "PYSEC-2022-10", "fix_versions": ["9.0.1"], "aliases": ["CVE-2022-22817"]}],
            },
            _skipped("torch", "2.14.1"),
        ],
        "fixes": [],
    }
    verdict = judge(report)
    assert verdict.status == "vulnerable"
    assert verdict.lines == ("pillow 9.0.0: PYSEC-2022-10 (fixed in 9.0.1)",)


def test_nothing_audited_is_unreachable_not_clean() -> None:
    """What a registry mirror without PyPI's per-version JSON API gives: 404 for every package, which
    pip-audit itself reports as 'No known vulnerabilities found'."""
    report = {"dependencies": [_skipped("numpy", "2.4.6"), _skipped("pillow", "13.0.0")], "fixes": []}
    assert judge(report).status == "unreachable"
    assert judge({"dependencies": [], "fixes": []}).status == "unreachable"


def test_missing_lock_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(tmp_path / "nothing.lock")]) == 2
    assert "make lock" in capsys.readouterr().err
    assert SKIPPED.startswith("SKIPPED:")


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def test_lock_pins_every_declared_dependency() -> None:
    """``make lock`` was re-run after the last change to pyproject.toml's dependencies."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {_name(requirement) for requirement in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_name(requirement) for requirement in extra if not requirement.startswith("cxr-triage")}
    pinned = {}
    for line in (REPO_ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line}"
            pinned[_name(name)] = version
    assert not declared - set(pinned), f"run `make lock`: not pinned: {sorted(declared - set(pinned))}"
