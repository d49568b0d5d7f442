"""CI's share of fuzzing: a time-bounded atheris run over seeds built in code, and a replay of every
input that once broke the contract (``regressions/``, one tiny file each, named for what it does).

``CXR_FUZZ_SECONDS`` sets the run's length (30 s by default; 0 skips it). Whatever the fuzzer finds
is copied into ``regressions/`` and the test fails naming it: fix the contract, keep the file, and
the replay below guards against the bug coming back.
"""

import base64
import hashlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.target import check_decode, seed_files

HERE = Path(__file__).resolve().parent
REGRESSIONS = HERE / "regressions"
HARNESS = HERE / "fuzz_decode.py"
REPO_ROOT = HERE.parents[1]
FUZZ_SECONDS = int(os.environ.get("CXR_FUZZ_SECONDS", "30"))
# libFuzzer's default, far above the ~130 MB the harness peaks at with a 2 MP budget: past it, a
# decoder allocated without asking the budget.
RSS_LIMIT_MB = 2048
PER_INPUT_TIMEOUT_S = 20
_ARTIFACT_KINDS = ("crash", "timeout", "oom", "leak", "slow-unit")


def _regression_files() -> list[Path]:
    return sorted(path for path in REGRESSIONS.iterdir() if path.is_file() and not path.name.startswith("."))


@pytest.mark.parametrize("path", _regression_files(), ids=lambda path: path.name)
def test_saved_regression_is_handled(path: Path) -> None:
    assert path.stat().st_size <= 8192, "regression fixtures stay tiny"
    check_decode(path.read_bytes())


def test_there_are_regressions_to_replay() -> None:
    """The parametrised replay above must not silently run zero cases."""
    assert len(_regression_files()) >= 1


def _keep(artifact: Path) -> str:
    data = artifact.read_bytes()
    kind = next((kind for kind in _ARTIFACT_KINDS if artifact.name.startswith(kind)), "crash")
    name = f"{kind}-{hashlib.sha256(data).hexdigest()[:12]}"
    (REGRESSIONS / name).write_bytes(data)
    shown = base64.b64encode(data).decode("ascii") if len(data) <= 4096 else f"({len(data)} bytes)"
    return f"{name}: {shown}"


@pytest.mark.skipif(FUZZ_SECONDS <= 0, reason="CXR_FUZZ_SECONDS=0")
@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")
def test_coverage_guided_fuzzing_finds_nothing(tmp_path: Path) -> None:
    corpus, artifacts = tmp_path / "corpus", tmp_path / "artifacts"
    corpus.mkdir()
    artifacts.mkdir()
    for name, data in seed_files().items():
        (corpus / name).write_bytes(data)
    for path in _regression_files():
        (corpus / path.name).write_bytes(path.read_bytes())
    command = [
        sys.executable,
        str(HARNESS),
        str(corpus),
        f"-max_total_time={FUZZ_SECONDS}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-timeout={PER_INPUT_TIMEOUT_S}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    run = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=FUZZ_SECONDS + 180,
        check=False,
    )
    output = run.stdout + run.stderr
    found = [_keep(artifact) for artifact in sorted(artifacts.iterdir())]
    report = [line for line in output.splitlines() if "libFuzzer" in line or line.startswith("SUMMARY")]
    assert not found, (
        "the fuzzer broke the contract; saved to tests/fuzz/regressions/:\n"
        + "\n".join(found + report)
        + "\n"
        + output[-3000:]
    )
    assert run.returncode == 0, output[-4000:]
    executed = re.search(r"stat::number_of_executed_units:\s*(\d+)", output)
    assert executed is not None, output[-4000:]
    assert int(executed.group(1)) >= 1000, "the fuzzer hardly ran: " + output[-2000:]
