"""What the benchmarks read of a running service process: its CPU shares and its memory."""

import mmap
import os
from pathlib import Path

import pytest

from bench.service_process import RunningService, cpu_shares
from service.inference.cpus import available_cpus


def test_cpu_shares_split_the_cpus_evenly_or_refuse() -> None:
    cpus = sorted(os.sched_getaffinity(0))[: available_cpus()]
    assert cpu_shares(1) == [cpus]
    assert [cpu for share in cpu_shares(len(cpus)) for cpu in share] == cpus
    with pytest.raises(ValueError, match="equal shares"):
        cpu_shares(len(cpus) + 1)


def test_resident_memory_follows_pages_the_process_touches() -> None:
    # This test process stands in for a service: the reads are of /proc/<pid>, whoever it is.
    process = RunningService(url="http://127.0.0.1:1", pid=os.getpid(), headers={}, log_path=Path("-"))
    sample = process.sample()
    assert sample is not None and sample.threads >= 1 and sample.open_fds >= 3
    # Fresh pages from the kernel, not the allocator: in a long test run malloc can hand back
    # memory that is already resident, and RSS would not move.
    with mmap.mmap(-1, 64 * 1024 * 1024) as ballast:
        before = process.rss_mb()
        for page in range(0, len(ballast), mmap.PAGESIZE):
            ballast[page] = 1  # touched, so resident
        grown = process.rss_mb()
        assert grown - before >= 56
        assert abs(process.sample().rss_mb - grown) < 8  # type: ignore[union-attr]
