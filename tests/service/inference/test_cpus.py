"""The CPU count that sizes ONNX Runtime's and the decoders' threads follows the container's limit."""

import os
from pathlib import Path

import pytest

from service.inference.cpus import available_cpus, cgroup_cpu_quota


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("200000 100000\n", 2.0), ("150000 100000\n", 1.5), ("max 100000\n", None), ("garbage\n", None)],
)
def test_cgroup_v2_quota(tmp_path: Path, cpu_max: str, expected: float | None) -> None:
    missing = tmp_path / "absent"
    assert cgroup_cpu_quota(_write(tmp_path / "cpu.max", cpu_max), missing, missing) == expected


@pytest.mark.parametrize(("quota", "period", "expected"), [("50000", "100000", 0.5), ("-1", "100000", None)])
def test_cgroup_v1_quota(tmp_path: Path, quota: str, period: str, expected: float | None) -> None:
    v1_quota, v1_period = _write(tmp_path / "quota", quota), _write(tmp_path / "period", period)
    assert cgroup_cpu_quota(tmp_path / "absent", v1_quota, v1_period) == expected


def test_no_cgroup_files_means_no_limit(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path / "a", tmp_path / "b", tmp_path / "c") is None


def test_available_cpus_never_exceeds_the_affinity_mask() -> None:
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
