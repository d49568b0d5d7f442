"""``make audit``: pip-audit over the lock file, failing CI on any known vulnerability.

When no vulnerability database answers, it says so loudly and does not fail CI. pip-audit itself
would print "No known vulnerabilities found" when the PyPI JSON API answers 404 for every package
(as a registry mirror without that API does), so a run that could audit no package at all counts
as unreachable, never as clean. ``CXR_AUDIT_REQUIRED=1`` turns unreachable into a failure, for a CI
that does have the network.

    python scripts/audit_dependencies.py requirements.lock
"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

SERVICES = ("pypi", "osv")  # PyPI's own advisories first, then OSV's
SKIPPED = "SKIPPED: vulnerability database unreachable"
_TIMEOUT_S = 600


@dataclass(frozen=True)
class Verdict:
    status: Literal["clean", "vulnerable", "unreachable"]
    lines: tuple[str, ...]


def judge(report: dict[str, Any]) -> Verdict:
    """The verdict on one pip-audit JSON report (``-f json``)."""
    dependencies: list[dict[str, Any]] = report.get("dependencies", [])
    audited = [dependency for dependency in dependencies if "skip_reason" not in dependency]
    skipped = sorted(dependency["name"] for dependency in dependencies if "skip_reason" in dependency)
    findings = [
        f"{dependency['name']} {dependency.get('version', '?')}: {vuln['id']}"
        + (f" (fixed in {', '.join(vuln['fix_versions'])})" if vuln.get("fix_versions") else "")
        for dependency in audited
        for vuln in dependency.get("vulns", [])
    ]
    if findings:
        return Verdict("vulnerable", tuple(findings))
    if not audited:
        return Verdict("unreachable", (f"none of {len(dependencies)} packages could be looked up",))
    lines = [f"{len(audited)} packages audited: no known vulnerabilities"]
    if skipped:
        lines.append(f"not found in the database, so not audited: {', '.join(skipped)}")
    return Verdict("clean", tuple(lines))


def audit(lock: Path, service: str) -> Verdict:
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "--requirement",
        str(lock),
        "--no-deps",  # the lock pins every package: nothing to resolve, nothing to install
        "--disable-pip",
        "--progress-spinner",
        "off",
        "--format",
        "json",
        "--vulnerability-service",
        service,
    ]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return Verdict("unreachable", (f"{service}: no answer in {_TIMEOUT_S} s",))
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        return Verdict("unreachable", (f"{service}: {last[:300]}",))
    verdict = judge(report)
    return Verdict(verdict.status, tuple(f"{service}: {line}" for line in verdict.lines))


def main(argv: list[str]) -> int:
    lock = Path(argv[1] if len(argv) > 1 else "requirements.lock")
    if not lock.is_file():
        print(f"audit: {lock} not found; run `make lock`", file=sys.stderr)
        return 2
    reasons: list[str] = []
    for service in SERVICES:
        verdict = audit(lock, service)
        if verdict.status == "unreachable":
            reasons.extend(verdict.lines)
            continue
        print("\n".join(verdict.lines))
        if verdict.status == "vulnerable":
            print(f"audit: known vulnerabilities in {lock}; upgrade, then `make lock`", file=sys.stderr)
            return 1
        return 0
    banner = "=" * 72
    print(f"{banner}\n{SKIPPED}\n" + "\n".join(reasons) + f"\n{banner}")
    return 1 if os.environ.get("CXR_AUDIT_REQUIRED") == "1" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
