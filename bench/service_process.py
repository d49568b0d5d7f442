"""The real service for a benchmark: ``python -m service`` as a child process, with an API key.

Benchmarks measure what a deployment runs, so the service is started exactly as ``cxr-serve`` is,
with authentication on (a throwaway key in a temporary key file) and its JSON log kept for the
report. Memory is read from ``/proc/<pid>/status``: no psutil needed on Linux, where we measure.
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from service.inference.cpus import available_cpus

REPO_ROOT = Path(__file__).resolve().parents[1]
_START_TIMEOUT_S = 120.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc/*/stat's unit


@dataclass(frozen=True)
class ProcessSample:
    rss_mb: float
    threads: int
    open_fds: int


@dataclass(frozen=True)
class RunningService:
    url: str
    pid: int
    headers: Mapping[str, str]
    log_path: Path

    def sample(self) -> ProcessSample | None:
        """Resident memory, threads and open file descriptors now; None where /proc is missing."""
        try:
            fields = self._status()
            open_fds = sum(1 for _ in Path(f"/proc/{self.pid}/fd").iterdir())
        except OSError:
            return None
        return ProcessSample(rss_mb=_rss_mb(fields), threads=int(fields["Threads"]), open_fds=open_fds)

    def rss_mb(self) -> float:
        """Resident memory now: the one read a loop sampling every few milliseconds can afford."""
        return _rss_mb(self._status())

    def _status(self) -> dict[str, str]:
        status = Path(f"/proc/{self.pid}/status").read_text()
        return dict(line.split(":", 1) for line in status.splitlines() if ":" in line)

    def thread_cpu(self) -> dict[int, tuple[str, float]]:
        """CPU seconds (user + system) each live thread has used, by thread id, with its OS name."""
        out: dict[int, tuple[str, float]] = {}
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            try:
                comm = (task / "comm").read_text().strip()
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # the thread ended between the listing and the read
                continue
            out[int(task.name)] = (comm, (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS)
        return out

    def metrics(self) -> dict[str, float]:
        """The service's unlabelled Prometheus samples now (histogram sums and counts among them)."""
        return {name: value for (name, labels), value in self.labelled_metrics().items() if not labels}

    def labelled_metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every Prometheus sample now, keyed by (name, sorted labels)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.url}/metrics", headers=self.headers, timeout=30).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


def latency_percentiles(latencies_ms: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in ms, one decimal; empty when nothing was measured."""
    if not latencies_ms:
        return {}
    p50, p95, p99 = np.percentile(np.asarray(latencies_ms), [50, 95, 99])
    return {
        "p50": round(float(p50), 1),
        "p95": round(float(p95), 1),
        "p99": round(float(p99), 1),
        "max": round(max(latencies_ms), 1),
    }


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago (the bench's servers, and the tests')."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_shares(processes: int) -> list[list[int]]:
    """The CPUs this process may use, cut into ``processes`` equal shares (in order), as that many
    pods with a CPU limit of one share each would get; ValueError where they do not divide evenly.
    Under a cgroup CPU quota smaller than the affinity mask, only as many CPUs as the quota allows
    are shared out, so each share is what its service sizes itself to."""
    cpus = sorted(os.sched_getaffinity(0))[: available_cpus()]
    if processes < 1 or len(cpus) % processes:
        raise ValueError(f"{len(cpus)} CPUs do not split into {processes} equal shares")
    size = len(cpus) // processes
    return [cpus[i * size : (i + 1) * size] for i in range(processes)]


def _pinned(command: list[str], cpus: Sequence[int] | None) -> list[str]:
    """``command`` run on ``cpus`` only (util-linux's taskset: set before exec, so every thread the
    service starts inherits it and sizes itself to it, as in a pod with that CPU limit)."""
    if cpus is None:
        return command
    taskset = shutil.which("taskset")
    if taskset is None:
        raise RuntimeError("pinning a service to CPUs needs taskset (util-linux)")
    return [taskset, "--cpu-list", ",".join(map(str, cpus)), *command]


@contextmanager
def running_service(
    model_dir: Path,
    extra_env: Mapping[str, str] | None = None,
    source: Path = REPO_ROOT,
    cpus: Sequence[int] | None = None,
) -> Iterator[RunningService]:
    """Start the service on ``model_dir`` and yield once /readyz is 200; stop it afterwards.
    ``source``: the checkout whose ``service`` package runs (another commit's, for before/after);
    ``cpus``: the only CPUs it may run on (None: all of ours)."""
    with tempfile.TemporaryDirectory(prefix="cxr-bench-") as scratch:
        secret = secrets.token_urlsafe(32)
        keys = Path(scratch) / "api-keys"
        keys.write_text(f"bench:{secret}:predict,metrics\n")
        port = free_port()
        env = {key: value for key, value in os.environ.items() if not key.startswith("CXR_")}
        env.update(
            {
                "PYTHONPATH": str(source),
                "CXR_MODEL_DIR": str(model_dir.resolve()),
                "CXR_PORT": str(port),
                "CXR_API_KEYS_FILE": str(keys),
                "CXR_DRAIN_SECONDS": "0",  # nothing routes here but us: stop at once when done
                **(extra_env or {}),
            }
        )
        log_path = Path(scratch) / "service.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                _pinned([sys.executable, "-m", "service"], cpus),
                cwd=source,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                url = f"http://127.0.0.1:{port}"
                wait_ready(process, url, log_path)
                yield RunningService(url, process.pid, {"Authorization": f"Bearer {secret}"}, log_path)
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def wait_ready(
    process: "subprocess.Popen[bytes]",
    url: str,
    log_path: Path | None = None,
    timeout_s: float = _START_TIMEOUT_S,
) -> None:
    """Return once ``url``/readyz answers 200; raise if the process exits first (quoting the end of
    ``log_path``, where given) or ``timeout_s`` passes. Used by the benchmarks and the tests."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            tail = f":\n{log_path.read_text()[-4000:]}" if log_path is not None else " before it was ready"
            raise RuntimeError(f"python -m service exited with {process.returncode}{tail}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("python -m service did not become ready")
        time.sleep(0.1)


def _rss_mb(status: Mapping[str, str]) -> float:
    return int(status["VmRSS"].split()[0]) / 1024.0  # /proc/<pid>/status gives kB
