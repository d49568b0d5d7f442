"""Soak: the real service under steady load for minutes, with its memory watched for leaks.

    python -m bench.soak --model models/cxr-pneumonia/5 --minutes 3 --concurrency 4 \\
        --out reports/bench/soak

``python -m service`` runs as a child process (authentication on, as deployed). A fixed number of
keep-alive clients post real films from ``../shared/data/kermany224`` back to back, the full
response included (Grad-CAM overlay PNG). Every few seconds the service's resident memory, threads
and open file descriptors are sampled from /proc. The report gives requests, errors, latency
percentiles and memory start/end/max, and judges two things:

- no errors: no transport failure, no 5xx, no error line in the service's log (a 4xx such as an
  out-of-distribution refusal is an answer, counted by code, not an error);
- flat memory: after the warm-up (allocator arenas and ORT buffers reach their working size), the
  least-squares RSS slope times the time left may grow by at most ``--max-growth-mb``.

Exit status 0 when both hold, 1 when not; without films it says so and exits 0 having run nothing.
"""

import argparse
import asyncio
import json
import os
import platform
import shlex
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
from pydantic import ValidationError

from bench.films import film_paths
from bench.output import write_report
from bench.service_process import REPO_ROOT, RunningService, latency_percentiles, running_service
from service.settings import Settings
from service.store.errors import ModelLoadError
from service.store.resolve import resolve_model_dir

DEFAULT_FILMS = REPO_ROOT.parent / "shared" / "data" / "kermany224" / "train"
MIB = 1024 * 1024


@dataclass(frozen=True)
class SoakConfig:
    model_dir: Path
    films: tuple[bytes, ...]
    duration_s: float = 180.0
    concurrency: int = 4
    sample_every_s: float = 5.0
    warmup_s: float = 30.0
    max_growth_mb: float = 32.0
    overlay: bool = True
    service_env: dict[str, str] = field(default_factory=dict)


@dataclass
class _Tally:
    latencies_ms: list[float] = field(default_factory=list)  # of 200 responses
    statuses: Counter[int] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)  # 4xx, by error code
    transport_errors: Counter[str] = field(default_factory=Counter)  # no response at all
    samples: list[dict[str, float]] = field(default_factory=list)

    def errors(self) -> Counter[str]:
        server = Counter({f"http_{status}": n for status, n in self.statuses.items() if status >= 500})
        return self.transport_errors + server

    def sent(self) -> int:
        return sum(self.statuses.values()) + sum(self.transport_errors.values())


def load_films(directory: Path, limit: int) -> tuple[bytes, ...]:
    """Up to ``limit`` films spread evenly over the sorted file list (every class represented)."""
    return tuple(p.read_bytes() for p in film_paths(directory, limit))


def run_soak(config: SoakConfig) -> dict[str, Any]:
    """Start the service, load it for ``duration_s``, and return the report (see ``format_report``)."""
    if not config.films:
        raise ValueError("no films to send")
    with running_service(config.model_dir, config.service_env) as service:
        model = httpx.get(f"{service.url}/v1/models", headers=service.headers, timeout=30).json()
        started = datetime.now(UTC)
        load_before = os.getloadavg()[0]
        tally, elapsed = asyncio.run(_drive(service, config))
        # Latency is only as good as the machine was quiet: other work on it shows up here.
        load_average = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        server = _server_figures(service)
        log_levels = _log_levels(service.log_path)
    return _report(
        config,
        model=model,
        started=started,
        elapsed=elapsed,
        tally=tally,
        server=server,
        log_levels=log_levels,
        load_average=load_average,
    )


async def _drive(service: RunningService, config: SoakConfig) -> tuple[_Tally, float]:
    tally = _Tally()
    start = time.monotonic()
    end = start + config.duration_s
    counter = iter(range(sys.maxsize))
    params = {"overlay": "true" if config.overlay else "false"}
    limits = httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while time.monotonic() < end:
            film = config.films[next(counter) % len(config.films)]
            sent = time.perf_counter()
            try:
                response = await client.post(
                    "/v1/predict", files={"file": ("film", film, "application/octet-stream")}, params=params
                )
            except httpx.HTTPError as exc:
                tally.transport_errors[type(exc).__name__] += 1
                continue
            tally.statuses[response.status_code] += 1
            if response.status_code == 200:
                tally.latencies_ms.append((time.perf_counter() - sent) * 1000.0)
            elif response.status_code < 500:
                tally.refusals[str(response.json().get("code", response.status_code))] += 1

    async def sampler() -> None:
        while True:
            sample = service.sample()
            if sample is not None:
                tally.samples.append(
                    {"t_s": round(time.monotonic() - start, 2), "requests": tally.sent(), **asdict(sample)}
                )
            if time.monotonic() >= end:
                return
            await asyncio.sleep(min(config.sample_every_s, max(end - time.monotonic(), 0.0)))

    async with httpx.AsyncClient(
        base_url=service.url, headers=dict(service.headers), timeout=60.0, limits=limits
    ) as client:
        await asyncio.gather(sampler(), *(client_loop(client) for _ in range(config.concurrency)))
    return tally, time.monotonic() - start


def _server_figures(service: RunningService) -> dict[str, float]:
    """Mean ONNX Runtime time per film, from the service's own histogram."""
    values = service.metrics()
    count = values.get("cxr_inference_duration_seconds_count", 0.0)
    total = values.get("cxr_inference_duration_seconds_sum", 0.0)
    return {"inferences": count, "inference_ms_mean": round(1000.0 * total / count, 2) if count else 0.0}


def _log_levels(log_path: Path) -> dict[str, int]:
    levels: Counter[str] = Counter()
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            levels[str(json.loads(line).get("level", "?"))] += 1
        except json.JSONDecodeError:
            levels["not_json"] += 1
    return dict(sorted(levels.items()))


def _memory(samples: list[dict[str, float]], warmup_s: float) -> dict[str, Any]:
    rss = [s["rss_mb"] for s in samples]
    if not rss:
        return {"available": False}
    steady = [s for s in samples if s["t_s"] >= warmup_s]
    slope = _slope_mb_per_s(steady)
    span_s = steady[-1]["t_s"] - steady[0]["t_s"] if steady else 0.0
    # A leak grows at a constant rate; an allocator settling into its working set slows down. The
    # slope of each quarter of the steady period tells the two apart where one fit cannot.
    quarters = [
        [
            s
            for s in steady
            if steady[0]["t_s"] + q * span_s / 4 <= s["t_s"] <= steady[0]["t_s"] + (q + 1) * span_s / 4
        ]
        for q in range(4)
    ]
    return {
        "available": True,
        "rss_mb_start": round(rss[0], 1),
        "rss_mb_after_warmup": round(steady[0]["rss_mb"], 1) if steady else None,
        "rss_mb_end": round(rss[-1], 1),
        "rss_mb_max": round(max(rss), 1),
        "slope_mb_per_min_after_warmup": round(slope * 60.0, 3),
        "fitted_growth_mb_after_warmup": round(slope * span_s, 2),
        "slope_mb_per_min_by_quarter": [round(_slope_mb_per_s(q) * 60.0, 2) for q in quarters],
        "steady_samples": len(steady),
        "threads_start_end": [samples[0]["threads"], samples[-1]["threads"]],
        "open_fds_start_end": [samples[0]["open_fds"], samples[-1]["open_fds"]],
    }


def _slope_mb_per_s(samples: list[dict[str, float]]) -> float:
    """Least-squares RSS slope; 0 for fewer than two samples."""
    if len(samples) < 2 or samples[-1]["t_s"] <= samples[0]["t_s"]:
        return 0.0
    t = np.asarray([s["t_s"] for s in samples])
    return float(np.polyfit(t, np.asarray([s["rss_mb"] for s in samples]), 1)[0])


def _report(  # one field per line of the report's JSON, in its order
    config: SoakConfig,
    *,
    model: dict[str, Any],
    started: datetime,
    elapsed: float,
    tally: _Tally,
    server: dict[str, float],
    log_levels: dict[str, int],
    load_average: list[float],
) -> dict[str, Any]:
    memory = _memory(tally.samples, config.warmup_s)
    error_kinds = tally.errors()
    errors = sum(error_kinds.values())
    log_errors = log_levels.get("error", 0) + log_levels.get("critical", 0)
    zero_errors = errors == 0 and log_errors == 0
    rss_flat = bool(
        memory["available"]
        and memory["steady_samples"] >= 2
        and memory["fitted_growth_mb_after_warmup"] <= config.max_growth_mb
    )
    answered = sum(tally.statuses.values())
    return {
        "started_at": started.isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
            "load_average_1min_start_end": load_average,
        },
        "model": {key: model.get(key) for key in ("name", "version", "onnx_sha256", "execution_provider")},
        "config": {
            "duration_s": config.duration_s,
            "concurrency": config.concurrency,
            "films": len(config.films),
            "overlay": config.overlay,
            "sample_every_s": config.sample_every_s,
            "warmup_s": config.warmup_s,
            "max_growth_mb": config.max_growth_mb,
            "service_env": config.service_env,
        },
        "elapsed_s": round(elapsed, 1),
        "requests": {
            "answered": answered,
            "ok": tally.statuses.get(200, 0),
            "refused": dict(sorted(tally.refusals.items())),
            "errors": errors,
            "error_kinds": dict(sorted(error_kinds.items())),
            "per_second": round(answered / elapsed, 2) if elapsed else 0.0,
        },
        "latency_ms": latency_percentiles(tally.latencies_ms),
        "server": server,
        "service_log_levels": log_levels,
        "memory": memory,
        "samples": tally.samples,
        "checks": {"zero_errors": zero_errors, "rss_flat": rss_flat},
        "verdict": "pass" if zero_errors and rss_flat else "fail",
    }


def format_report(report: dict[str, Any]) -> str:
    requests, latency, memory = report["requests"], report["latency_ms"], report["memory"]
    config, model = report["config"], report["model"]
    lines = [
        f"soak {report['started_at']}  verdict: {report['verdict'].upper()}",
        f"command: {report.get('command', '(library call)')}",
        f"model: {model['name']} {model['version']} on {model['execution_provider']}",
        f"machine: {report['machine']['cpus']} CPUs, {report['machine']['platform']}, 1-min load average "
        f"{report['machine']['load_average_1min_start_end'][0]} -> "
        f"{report['machine']['load_average_1min_start_end'][1]}",
        f"load: {config['concurrency']} keep-alive clients, {config['films']} films, "
        f"overlay={config['overlay']}, {report['elapsed_s']} s",
        f"requests: {requests['answered']} answered ({requests['per_second']}/s), {requests['ok']} ok, "
        f"refused {requests['refused'] or 0}, errors {requests['errors']} {requests['error_kinds'] or ''}",
        f"latency ms (200s): p50 {latency.get('p50')}  p95 {latency.get('p95')}  p99 {latency.get('p99')}  "
        f"max {latency.get('max')}",
        f"server: mean ONNX Runtime time {report['server']['inference_ms_mean']} ms per film; "
        f"log lines by level {report['service_log_levels']}",
    ]
    if memory["available"]:
        lines += [
            f"RSS MB: start {memory['rss_mb_start']}  after {config['warmup_s']} s warm-up "
            f"{memory['rss_mb_after_warmup']}  end {memory['rss_mb_end']}  max {memory['rss_mb_max']}",
            f"RSS slope after warm-up: {memory['slope_mb_per_min_after_warmup']} MB/min, fitted growth "
            f"{memory['fitted_growth_mb_after_warmup']} MB (bound {config['max_growth_mb']} MB) over "
            f"{memory['steady_samples']} samples; by quarter {memory['slope_mb_per_min_by_quarter']} MB/min",
            f"threads start/end {memory['threads_start_end']}, open fds start/end "
            f"{memory['open_fds_start_end']}",
        ]
    else:
        lines.append("RSS: not available (no /proc)")
    checks = report["checks"]
    lines.append(f"checks: zero_errors={checks['zero_errors']} rss_flat={checks['rss_flat']}")
    return "\n".join(lines) + "\n"


def _default_model() -> Path | None:
    try:
        return resolve_model_dir(Settings(model_store=REPO_ROOT / "models", model_dir=None))
    except (ModelLoadError, ValidationError):  # no store or no version: the caller must name one
        return None


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="model version folder (default: newest cxr-pneumonia)")
    parser.add_argument("--films", type=Path, default=DEFAULT_FILMS, help="folder of films, searched deeply")
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds excluded from the RSS slope")
    parser.add_argument("--max-growth-mb", type=float, default=32.0)
    parser.add_argument("--max-films", type=int, default=256)
    parser.add_argument("--no-overlay", action="store_true", help="ask for no Grad-CAM PNG")
    parser.add_argument("--out", type=Path, help="write <out>.json and <out>.txt")
    args = parser.parse_args(args_list)

    model_dir = args.model or _default_model()
    if model_dir is None:
        parser.error("no model under models/cxr-pneumonia; name one with --model DIR")
    films = load_films(args.films, args.max_films) if args.films.is_dir() else ()
    if not films:
        print(f"soak: SKIPPED, no films under {args.films} (see ../shared/data/README.md)", file=sys.stderr)
        return 0
    config = SoakConfig(
        model_dir=model_dir,
        films=films,
        duration_s=args.minutes * 60.0,
        concurrency=args.concurrency,
        sample_every_s=args.sample_every,
        warmup_s=args.warmup,
        max_growth_mb=args.max_growth_mb,
        overlay=not args.no_overlay,
    )
    report = {"command": shlex.join(["python", "-m", "bench.soak", *args_list]), **run_soak(config)}
    text = format_report(report)
    print(text, end="")
    write_report(args.out, report, text)
    return 0 if report["verdict"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
