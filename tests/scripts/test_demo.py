"""``make demo``'s script on the released model: it starts the service, classifies every sample film
over HTTP (overlays saved, the non-chest image refused) and, with DEMO_SERVE=0, stops. No training."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from bench.service_process import free_port
from tests.service.live import REPO_ROOT

SAMPLES = json.loads((REPO_ROOT / "samples" / "samples.json").read_text(encoding="utf-8"))


def run_demo(out: Path, port: int) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CXR_")}
    env.update(
        VENV=str(Path(sys.executable).parent.parent),  # this interpreter's environment
        PYTHONPATH=str(REPO_ROOT),
        CXR_PORT=str(port),
        DEMO_OUT=str(out),
        DEMO_SERVE="0",
    )
    return subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "demo.sh")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_demo_classifies_the_sample_films_and_stops(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "demo", free_port())
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for sample in SAMPLES:
        (line,) = [line for line in lines if f" {sample['file']} " in line]
        assert line.startswith("ok "), line
    assert any("out_of_distribution" in line for line in lines)
    overlays = sorted(p.name for p in (tmp_path / "demo" / "overlays").iterdir())
    assert len(overlays) == sum(s["expected"] != "refused" for s in SAMPLES)
    assert "curl -H @" in result.stdout and "/v1/predict" in result.stdout


def test_the_demo_refuses_a_port_another_server_holds(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        result = run_demo(tmp_path / "demo", other.getsockname()[1])
    assert result.returncode == 2
    assert "already in use" in result.stderr
