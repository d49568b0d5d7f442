"""Data-parallel training under a real ``torchrun`` with two processes (gloo on CPU; NCCL on GPUs)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from training.fit import run_folder


def test_torchrun_with_two_processes_trains_one_run_folder(tiny_dataset: Path, tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "training",
        "train",
        "--data",
        str(tiny_dataset),
        "--backbone",
        "baseline_cnn",
        "--weights",
        "none",
        "--image-size",
        "64",
        "--patient-pattern",
        r"(?P<patient>person\d+)",
        "--batch-size",
        "4",
        "--head-epochs",
        "1",
        "--finetune-epochs",
        "1",
        "--imbalance",
        "oversample",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--output-dir",
        str(tmp_path / "runs"),
        "--run-name",
        "ddp",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["ddp"]  # rank 1 wrote nothing of its own
    summary = run_folder.read_summary(tmp_path / "runs" / "ddp")
    assert summary.training_processes == "2 processes (DDP, gloo)"
    assert summary.epochs_run == 2
    history = json.loads((tmp_path / "runs" / "ddp" / run_folder.HISTORY_JSON).read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    assert done.stdout.count("run folder:") == 1  # one summary printed, by rank 0
