"""The GPU runtime benchmark's code runs end to end on the tiny model, on the CPU (structure, not speed)."""

import json
from pathlib import Path

from bench.gpu_runtime import main


def test_gpu_runtime_benchmark_reports_every_cell(
    tiny_model_dir: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runtime.json"
    args = ["--provider", "cpu", "--models", str(tiny_model_dir), "--films", str(tiny_dataset)]
    assert main([*args, "--seconds", "0.05", "--pad", "off", "on", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert len(results) == 2 * 2 * 2  # pad x I/O binding x batch pattern
    assert all(r["images_per_s"] > 0 and r["provider"] == "CPUExecutionProvider" for r in results.values())
    assert f"{tiny_model_dir.name} pad=on io_binding=on b1..8 cycling" in results
