"""End to end: the real service under HTTP load, beside the raw ONNX Runtime ceiling, in one run.

    python -m bench.load --model models/cxr-pneumonia/5 --out reports/bench/load

For each service mode (dynamic batching as configured by default, and no batching; with
``--baseline DIR``, also the service of another checkout, e.g. the commit before a change, as mode
``before``), the service runs as ``python -m service`` (authentication on, as deployed) and a lean
keep-alive load generator (``bench.http_load``) posts real films at each concurrency, for each kind.
A mode named ``NAME@N`` runs N services instead of one, each pinned to its own equal share of the
CPUs - as N pods with that CPU limit behind one Kubernetes Service - and spreads the connections
evenly over them; its figures are the N together. The kinds:
- ``png-224``: Kermany films converted to 8-bit grey PNG, 224 px (the shared data holds JPEGs;
  before 2026-12-06 this kind posted those JPEGs as they are, now ``jpeg-224``);
- ``png-full`` and ``dicom-full``: the same films upsampled to 2048 x 2048, as 8-bit PNG and as
  12-bit uncompressed DICOM (``bench.films``).

Each cell gives throughput, latency p50/p95/p99 of the 200s, errors (5xx and transport failures),
refusals by code, the mean batch the service formed (from its own metrics), and the service's peak
resident memory; the service's memory at rest is taken after start-up. The raw ceiling (session.run
on preprocessed tensors, same model, batch 1, 8, 32) is timed before and after the service runs,
in every layout the service could use (one run on every CPU, ONNX Runtime's threads spinning and
not; one single-threaded run per CPU side by side), and the ratios - the figures that matter on a shared,
noisy machine - are computed against the better of the two means. With ``--provider cuda`` (or
``tensorrt``) the ceiling is one run at a time on that provider, and every service is started on it.

Responses are requested with ``overlay=false`` so the ratio to the ceiling measures the serving
path; the overlay's cost is measured in ``KIND+overlay`` cells (``--overlay-kinds``, at
``--overlay-concurrency``). Where the service reports ``cxr_predict_stage_seconds``, each cell also
gives the mean time a request spent in each stage (upload, queues, decode, batch, inference, overlay,
PNG, JSON), the mean time the app saw it, and the mean latency the client saw; and the CPU each
answered film cost, split by thread from ``/proc`` (inference lanes, event loop, other service
threads, the load generator itself) with the CPUs kept busy (``cpu_per_film``).
"""

import argparse
import asyncio
import resource
import sys
import time
from collections import Counter
from collections.abc import Collection
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.ceiling import Variant, film_tensors, providers_for, session, time_variants
from bench.films import RASTER_SUFFIXES, film_paths, full_size_dicom, full_size_png, grey_png
from bench.http_load import LoadResult, drive_spread, predict_request
from bench.output import command_line, machine, publish
from bench.service_process import REPO_ROOT, RunningService, cpu_shares, latency_percentiles, running_service
from service.contract import ModelCard
from service.contract.model_card import CARD_FILENAME, ONNX_FILENAME
from service.inference.providers import ProviderSpec
from service.observability.metrics import PREDICT_STAGES
from service.observability.threads import LANE_THREAD
from service.settings import Settings
from service.store.errors import ModelLoadError

DEFAULT_FILMS = REPO_ROOT.parent / "shared" / "data" / "kermany224" / "train"
KINDS = ("png-224", "jpeg-224", "png-full", "dicom-full")
DEFAULT_KINDS = ("png-224", "png-full", "dicom-full")
OVERLAY = "+overlay"
STAGE_METRIC = "cxr_predict_stage_seconds"
PREDICT_200 = (("method", "POST"), ("route", "/v1/predict"), ("status", "200"))


@dataclass(frozen=True)
class Mode:
    name: str
    env: dict[str, str]
    source: Path | None = None  # another checkout's service (None: this one)
    processes: int = 1  # > 1: that many services, each pinned to its share of the CPUs


DEFAULT_MODES = (Mode("batched", {}), Mode("unbatched", {"CXR_MAX_BATCH_SIZE": "1"}))


@dataclass(frozen=True)
class LoadConfig:
    model_dir: Path
    films_dir: Path
    concurrencies: tuple[int, ...] = (1, 8, 32)
    kinds: tuple[str, ...] = DEFAULT_KINDS
    modes: tuple[Mode, ...] = DEFAULT_MODES
    seconds: float = 15.0
    warmup_s: float = 3.0
    max_films: int = 64
    full_size_films: int = 8
    ceiling_seconds: float = 5.0
    provider: str = "cpu"  # cuda | tensorrt: the ceiling on the GPU, and every mode's service on it
    overlay_kinds: tuple[str, ...] = ("png-224",)
    overlay_concurrencies: tuple[int, ...] = (8,)


def build_films(config: LoadConfig) -> dict[str, list[bytes]]:
    paths = film_paths(config.films_dir, config.max_films, RASTER_SUFFIXES)  # Pillow upsamples them
    if not paths:
        raise FileNotFoundError(f"no films under {config.films_dir}")
    small = [p.read_bytes() for p in paths]
    full = small[: config.full_size_films]
    wanted = set(config.kinds) | set(config.overlay_kinds)
    films = {"jpeg-224": small, "png-224": [grey_png(f) for f in small]}
    if "png-full" in wanted:
        films["png-full"] = [full_size_png(f) for f in full]
    if "dicom-full" in wanted:
        films["dicom-full"] = [full_size_dicom(f) for f in full]
    return {kind: films[kind] for kind in KINDS if kind in wanted}


@dataclass(frozen=True)
class Layout:
    """How a raw ceiling run uses the CPUs: runs at once (each on its own thread), ONNX Runtime
    threads per run, and whether those threads spin (busy-wait) for work."""

    lanes: int
    threads: int
    spinning: bool


def ceiling_layouts(cpus: int) -> dict[str, Layout]:
    """Every way of running the raw session the service could use, so the best of them is the
    ceiling and no setting of the service (spinning off, lanes) can flatter its ratio: one run on
    every CPU with ORT's threads spinning (its default) and not, and one single-threaded run per CPU
    side by side (the service's lanes, service.inference.lanes)."""
    layouts = {
        f"1 run x {cpus} threads, spin on": Layout(1, cpus, True),
        f"1 run x {cpus} threads, spin off": Layout(1, cpus, False),
    }
    if cpus > 1:
        layouts[f"{cpus} runs x 1 thread"] = Layout(cpus, 1, False)
    return layouts


def measure_ceiling(
    model_dir: Path, films: list[bytes], batches: tuple[int, ...], seconds: float, provider: str = "cpu"
) -> dict[str, dict[str, float]]:
    """session.run images/s and p50 of the full graph on preprocessed films, keyed ``"b8 <layout>"``:
    every batch in every layout of ``ceiling_layouts``, interleaved; on a GPU, one run at a time on
    the service's own provider list, a session per batch (as ``bench.ceiling``)."""
    from service.inference.cpus import available_cpus

    card = ModelCard.model_validate_json((model_dir / CARD_FILENAME).read_text())
    batch = film_tensors(films, max(batches), card)
    variants = []
    if provider != "cpu":
        providers = gpu_providers(provider, card, max(batches))
        for b in batches:
            model = session(model_dir / ONNX_FILENAME, 0, providers)
            variants.append(
                Variant(f"b{b} 1 run on {provider}", b, partial(model.run, None, {"image": batch[:b]}))
            )
        return time_variants(variants, seconds, rounds=3)
    for name, layout in ceiling_layouts(available_cpus()).items():
        model = session(model_dir / ONNX_FILENAME, layout.threads, spinning=layout.spinning)
        variants += [
            Variant(f"b{b} {name}", b, partial(model.run, None, {"image": batch[:b]}), lanes=layout.lanes)
            for b in batches
        ]
    return time_variants(variants, seconds, rounds=3)


def gpu_providers(provider: str, card: ModelCard, max_batch: int) -> list[ProviderSpec]:
    """The service's provider list for ``provider`` with its default cuDNN search; raises
    ``ModelLoadError``, naming what is missing, where this onnxruntime has no such provider."""
    return providers_for(provider, card, max_batch, Settings().cudnn_conv_algo_search)


def combine_ceilings(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], batches: tuple[int, ...]
) -> dict[str, Any]:
    """Per batch: the mean of before and after for each layout, and the best of them as the ceiling
    the service is measured against."""
    layouts = sorted({name.split(" ", 1)[1] for name in before})

    def mean(layout: str, b: int) -> float:
        return (before[f"b{b} {layout}"]["images_per_s"] + after[f"b{b} {layout}"]["images_per_s"]) / 2

    ceiling: dict[str, Any] = {}
    for b in batches:
        by_layout: dict[str, dict[str, Any]] = {
            layout: {
                "images_per_s": round(mean(layout, b), 1),
                "images_per_s_before_after": [
                    round(before[f"b{b} {layout}"]["images_per_s"], 1),
                    round(after[f"b{b} {layout}"]["images_per_s"], 1),
                ],
                "p50_ms": round(before[f"b{b} {layout}"]["p50_ms"], 2),
            }
            for layout in layouts
        }
        best = max(layouts, key=lambda layout: mean(layout, b))
        ceiling[f"b{b}"] = {**by_layout[best], "best_of": best, "layouts": by_layout}
    return ceiling


def run_load(config: LoadConfig) -> dict[str, Any]:
    """The whole benchmark in the order it runs (ceiling, every cell on both services, ceiling again):
    long, but one sequence that a reader checks against the report it writes."""
    films = build_films(config)
    batches = tuple(sorted({1, 8, 32, *config.concurrencies, *config.overlay_concurrencies}))
    started = datetime.now(UTC)
    ceiling_films = films[config.kinds[0]]
    ceiling_before = measure_ceiling(
        config.model_dir, ceiling_films, batches, config.ceiling_seconds, config.provider
    )
    cells: list[dict[str, Any]] = []
    services: dict[str, Any] = {}
    with ExitStack() as stack:
        # Every mode's service is up at once and the modes take turns on each cell, so a noisy
        # neighbour slows them alike and batched / unbatched stays a fair ratio.
        modes = [on_provider(m, config.provider) for m in config.modes]
        running = {m.name: start_mode(stack, config.model_dir, m) for m in modes}
        time.sleep(1.0)
        for mode in modes:
            group = running[mode.name]
            model = httpx.get(f"{group[0].url}/v1/models", headers=group[0].headers, timeout=30).json()
            services[mode.name] = {
                "env": mode.env,
                "source": str(mode.source) if mode.source else None,
                "processes": len(group),
                "execution_provider": model.get("execution_provider"),
                "rss_mb_at_rest": round(_rss_mb(group), 1),
            }
        plan = [(kind, films[kind], c, False) for kind in config.kinds for c in config.concurrencies]
        plan += [
            (kind + OVERLAY, films[kind], c, True)
            for kind in config.overlay_kinds
            for c in config.overlay_concurrencies
        ]
        for kind, kind_films, concurrency, overlay in plan:
            for mode in config.modes:
                cells.append(
                    _cell(
                        running[mode.name],
                        mode,
                        kind,
                        kind_films,
                        concurrency=concurrency,
                        config=config,
                        overlay=overlay,
                    )
                )
    ceiling_after = measure_ceiling(
        config.model_dir, ceiling_films, batches, config.ceiling_seconds, config.provider
    )
    ceiling = combine_ceilings(ceiling_before, ceiling_after, batches)
    card = ModelCard.model_validate_json((config.model_dir / CARD_FILENAME).read_text())
    return {
        "started_at": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "model": f"{card.name} {card.version}",
        "config": {
            "provider": config.provider,
            "concurrencies": list(config.concurrencies),
            "kinds": list(config.kinds),
            "overlay_kinds": list(config.overlay_kinds),
            "overlay_concurrencies": list(config.overlay_concurrencies),
            "seconds": config.seconds,
            "warmup_s": config.warmup_s,
            "films": {kind: len(f) for kind, f in films.items()},
            "film_bytes_mean": {
                kind: round(float(np.mean([len(x) for x in f]))) for kind, f in films.items()
            },
        },
        "services": services,
        "ceiling": ceiling,
        "cells": cells,
        "ratios": ratios(cells, ceiling, config),
    }


def on_provider(mode: Mode, provider: str) -> Mode:
    """The mode with its service on ``provider`` (``CXR_EXECUTION_PROVIDER``) unless it names one:
    on a GPU the service must refuse to start without it rather than fall back to the CPU."""
    if provider == "cpu" or "CXR_EXECUTION_PROVIDER" in mode.env:
        return mode
    return replace(mode, env={**mode.env, "CXR_EXECUTION_PROVIDER": provider})


def start_mode(stack: ExitStack, model_dir: Path, mode: Mode) -> list[RunningService]:
    """The mode's service: one process on every CPU, or one per share of them (``Mode.processes``)."""
    shares: list[list[int] | None] = [None] if mode.processes == 1 else [*cpu_shares(mode.processes)]
    source = mode.source or REPO_ROOT
    return [stack.enter_context(running_service(model_dir, mode.env, source, cpus)) for cpus in shares]


def _rss_mb(group: list[RunningService]) -> float:
    """The processes' resident memory together now."""
    return sum(sample.rss_mb for service in group if (sample := service.sample()) is not None)


def _cell(
    group: list[RunningService],
    mode: Mode,
    kind: str,
    films: list[bytes],
    *,
    concurrency: int,
    config: LoadConfig,
    overlay: bool = False,
) -> dict[str, Any]:
    query = f"overlay={str(overlay).lower()}"
    targets = [
        (service.url, [predict_request(service.url, film, dict(service.headers), query) for film in films])
        for service in group
    ]
    result, peak_rss, before, cpu = asyncio.run(_drive_sampled(group, targets, concurrency, config))
    after = _metrics(group)
    films_run, runs = (
        _delta(before, after, f"cxr_inference_batch_size_{part}", ()) for part in ("sum", "count")
    )
    stages, server_ms = _stage_means(before, after)
    return {
        "mode": mode.name,
        "kind": kind,
        "concurrency": concurrency,
        "requests": sum(result.statuses.values()),
        "ok": result.statuses.get(200, 0),
        "images_per_s": round(result.statuses.get(200, 0) / result.seconds, 1),
        "latency_ms": latency_percentiles(result.latencies_ms),
        "errors": result.errors,
        "refusals": dict(result.refusals),
        "transport_errors": dict(result.transport_errors),
        "mean_batch": round(films_run / runs, 2) if runs else None,
        "rss_mb_peak": round(peak_rss, 1),
        # Means in ms from the service's metrics between the window's start and the last answer.
        "stages_ms": stages,
        "server_ms": server_ms,
        "client_ms": round(float(np.mean(result.latencies_ms)), 2) if result.latencies_ms else None,
        "cpu_ms_per_film": cpu,
    }


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _metrics(group: list[RunningService]) -> Samples:
    """Every Prometheus sample now, summed over the processes (counters, histogram sums and counts
    add up; the stage means and batch sizes below are ratios of them)."""
    total: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
    for service in group:
        total.update(service.labelled_metrics())
    return dict(total)


def _delta(before: Samples, after: Samples, name: str, labels: tuple[tuple[str, str], ...]) -> float:
    return after.get((name, labels), 0.0) - before.get((name, labels), 0.0)


def _stage_means(before: Samples, after: Samples) -> tuple[dict[str, float], float | None]:
    """Mean ms per stage of the predictions in between, and the mean time the app took for a 200."""
    stages: dict[str, float] = {}
    for name, labels in after:
        if name == f"{STAGE_METRIC}_count":
            count = _delta(before, after, name, labels)
            if count:
                total = _delta(before, after, f"{STAGE_METRIC}_sum", labels)
                stages[dict(labels)["stage"]] = round(total / count * 1000.0, 3)
    count = _delta(before, after, "cxr_http_request_duration_seconds_count", PREDICT_200)
    total = _delta(before, after, "cxr_http_request_duration_seconds_sum", PREDICT_200)
    return stages, round(total / count * 1000.0, 2) if count else None


async def _drive_sampled(
    group: list[RunningService],
    targets: list[tuple[str, list[bytes]]],
    concurrency: int,
    config: LoadConfig,
) -> tuple[LoadResult, float, Samples, dict[str, float] | None]:
    """The load's result, the peak RSS, the service's metrics when the measured window opened, and
    the CPU per film in the window (``cpu_per_film``); each of the processes together."""
    peak = 0.0
    done = asyncio.Event()

    async def at_window_start() -> tuple[Samples, CpuSnapshot]:
        await asyncio.sleep(config.warmup_s)
        samples = await asyncio.to_thread(_metrics, group)
        return samples, cpu_snapshot(group)

    async def at_window_end() -> CpuSnapshot:
        await asyncio.sleep(config.warmup_s + config.seconds)
        return cpu_snapshot(group)

    async def sampler() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_mb(group))
            await asyncio.sleep(0.25)

    task = asyncio.create_task(sampler())
    window_start = asyncio.create_task(at_window_start())
    window_end = asyncio.create_task(at_window_end())
    try:
        result = await drive_spread(targets, concurrency, config.seconds, config.warmup_s)
    finally:
        done.set()
        await task
    samples, cpu_start = await window_start
    pids = {service.pid for service in group}
    films = result.statuses.get(200, 0)
    return result, peak, samples, cpu_per_film(cpu_start, await window_end, pids, films, config.seconds)


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds used so far: each service thread's (by id, with its OS name; thread ids are unique
    across processes) and this process's (the load generator)."""

    threads: dict[int, tuple[str, float]]
    client_s: float


def cpu_snapshot(group: list[RunningService]) -> CpuSnapshot:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    threads = {tid: cpu for service in group for tid, cpu in service.thread_cpu().items()}
    return CpuSnapshot(threads, usage.ru_utime + usage.ru_stime)


def cpu_per_film(
    before: CpuSnapshot, after: CpuSnapshot, pids: Collection[int], films: int, seconds: float
) -> dict[str, float] | None:
    """CPU ms per answered film in the window: the inference lanes (told apart by their OS name,
    ``service.observability.threads``; an older checkout's lanes count as other threads), the event
    loops (the main threads of the processes ``pids``), every other service thread (decoding,
    overlays, ONNX Runtime's own), the load generator; and how many CPUs all of it kept busy."""
    if films <= 0 or seconds <= 0:
        return None
    groups = {"lanes": 0.0, "event_loop": 0.0, "other_threads": 0.0}
    for tid, (comm, cpu) in after.threads.items():
        used = cpu - before.threads.get(tid, (comm, 0.0))[1]
        group = "event_loop" if tid in pids else "lanes" if comm == LANE_THREAD else "other_threads"
        groups[group] += used
    client = after.client_s - before.client_s
    out = {name: round(used / films * 1000.0, 2) for name, used in groups.items()}
    out["client"] = round(client / films * 1000.0, 2)
    out["busy_cpus"] = round((sum(groups.values()) + client) / seconds, 2)
    return out


def best_raw(ceiling: dict[str, Any], concurrency: int) -> float:
    """The highest raw images/s at any batch up to ``concurrency``, in any layout (0 if none)."""
    return max(
        (c["images_per_s"] for name, c in ceiling.items() if int(name[1:]) <= concurrency), default=0.0
    )


def ratios(
    cells: list[dict[str, Any]], ceiling: dict[str, Any], config: LoadConfig
) -> dict[str, float | None]:
    def cell(mode: str, kind: str, concurrency: int) -> dict[str, Any] | None:
        for c in cells:
            if (c["mode"], c["kind"], c["concurrency"]) == (mode, kind, concurrency):
                return c
        return None

    out: dict[str, float | None] = {}
    modes = [m.name for m in config.modes]
    groups = [(kind, config.concurrencies) for kind in config.kinds]
    groups += [(kind + OVERLAY, config.overlay_concurrencies) for kind in config.overlay_kinds]
    for kind, concurrencies in groups:
        for concurrency in concurrencies:
            for mode in modes:
                c = cell(mode, kind, concurrency)
                if c is not None and f"b{concurrency}" in ceiling:
                    out[f"{mode} {kind} c{concurrency} / ceiling b{concurrency}"] = round(
                        c["images_per_s"] / ceiling[f"b{concurrency}"]["images_per_s"], 3
                    )
                best = best_raw(ceiling, concurrency)
                if c is not None and best:
                    # The stricter yardstick: the best the runtime did at any batch the service
                    # could have formed (on the CPU, small batches in lanes beat batch 32).
                    out[f"{mode} {kind} c{concurrency} / best raw <= b{concurrency}"] = round(
                        c["images_per_s"] / best, 3
                    )
        for concurrency in concurrencies:
            batched = cell("batched", kind, concurrency)
            for other in ("unbatched", "before"):  # the gain from batching; from the change measured
                base = cell(other, kind, concurrency)
                if batched and base and base["images_per_s"]:
                    out[f"batched / {other} {kind} c{concurrency}"] = round(
                        batched["images_per_s"] / base["images_per_s"], 3
                    )
            for spread_mode in config.modes:  # N pinned processes against one on every CPU
                spread = cell(spread_mode.name, kind, concurrency)
                if spread_mode.processes > 1 and spread and batched and batched["images_per_s"]:
                    out[f"{spread_mode.name} / batched {kind} c{concurrency}"] = round(
                        spread["images_per_s"] / batched["images_per_s"], 3
                    )
        for mode in modes:
            for concurrency in concurrencies:
                c = cell(mode, kind, concurrency)
                if c and c["latency_ms"]:
                    out[f"{mode} {kind} c{concurrency} p99 / p50"] = round(
                        c["latency_ms"]["p99"] / c["latency_ms"]["p50"], 3
                    )
    return out


def format_report(report: dict[str, Any]) -> str:
    machine = report["machine"]
    ceiling = ", ".join(
        f"{name} {c['images_per_s']} img/s ({c['best_of']})" for name, c in report["ceiling"].items()
    )
    layouts = "; ".join(
        f"{name} "
        + ", ".join(
            f"{layout} {v['images_per_s']} {v['images_per_s_before_after']}"
            for layout, v in c["layouts"].items()
        )
        for name, c in report["ceiling"].items()
    )
    lines = [
        f"load {report['started_at']} | {report['model']} | onnxruntime {machine['onnxruntime']} | "
        f"{machine['cpus']} CPUs | 1-min load at the end {machine['load_average_1min']}",
        f"command: {report.get('command', '(library call)')}",
        "raw ceiling (session.run, preprocessed tensors; mean of before and after; "
        f"{_layouts_said(report)}): {ceiling}",
        f"  by layout [before, after]: {layouts}",
    ]
    for name, service in report["services"].items():
        processes = service.get("processes", 1)
        pinned = (
            f", {processes} processes, each on its own 1/{processes} of the CPUs" if processes > 1 else ""
        )
        lines.append(
            f"service {name}: env {service['env'] or '(defaults)'}, {service['execution_provider']}"
            f"{pinned}, RSS at rest {service['rss_mb_at_rest']} MB"
        )
    columns = ("img/s", "p50", "p95", "p99", "errors", "batch", "RSS MB", "client", "app")
    lines.append(f"{'mode':<10}{'kind':<17}{'conc':>5}" + "".join(f"{c:>8}" for c in columns) + "  refusals")
    for c in report["cells"]:
        latency = c["latency_ms"]
        values = (
            c["images_per_s"],
            latency.get("p50", "-"),
            latency.get("p95", "-"),
            latency.get("p99", "-"),
            c["errors"],
            c["mean_batch"] or "-",
            c["rss_mb_peak"],
            c.get("client_ms") or "-",
            c.get("server_ms") or "-",
        )
        row = f"{c['mode']:<10}{c['kind']:<17}{c['concurrency']:>5}" + "".join(f"{v:>8}" for v in values)
        lines.append(f"{row}  {c['refusals'] or ''}")
    lines += _stage_table(report["cells"])
    lines += _cpu_table(report["cells"])
    lines.append("ratios:")
    lines += [f"  {name}: {value}" for name, value in report["ratios"].items()]
    return "\n".join(lines) + "\n"


def _layouts_said(report: dict[str, Any]) -> str:
    provider = report["config"].get("provider", "cpu")
    if provider != "cpu":
        return f"one run at a time on {provider}, the service's provider list"
    return (
        "the best of one run on every CPU, ONNX Runtime's threads spinning or not, and one "
        "single-threaded run per CPU"
    )


def _stage_table(cells: list[dict[str, Any]]) -> list[str]:
    """Mean ms per request in each stage, for the cells whose service reports stages; "rest of app"
    is the app's time less the stages (routing, access check, middleware, logging, metrics), and
    "outside app" the client's latency less the app's (HTTP parsing in h11, sockets, the client)."""
    rows = [c for c in cells if c.get("stages_ms")]
    if not rows:
        return []
    stages = [s for s in PREDICT_STAGES if any(s in c["stages_ms"] for c in rows)]
    names = [*stages, "rest of app", "outside app", "client"]
    lines = [
        "mean ms per request by stage (cxr_predict_stage_seconds; *_wait = queued):",
        f"{'mode':<10}{'kind':<20}{'conc':>5}  " + " ".join(f"{n:>12}" for n in names),
    ]
    for c in rows:
        values: list[float | None] = [c["stages_ms"].get(s) for s in stages]
        server, client = c.get("server_ms"), c.get("client_ms")
        # The stages overlap nothing but do not all apply (no overlay stages without one).
        inside = sum(v for v in values if v is not None)
        values += [
            round(server - inside, 2) if server is not None else None,
            round(client - server, 2) if client is not None and server is not None else None,
            client,
        ]
        text = " ".join(f"{'-' if v is None else round(v, 2):>12}" for v in values)
        lines.append(f"{c['mode']:<10}{c['kind']:<20}{c['concurrency']:>5}  {text}")
    return lines


def _cpu_table(cells: list[dict[str, Any]]) -> list[str]:
    rows = [c for c in cells if c.get("cpu_ms_per_film")]
    if not rows:
        return []
    names = ("lanes", "event_loop", "other_threads", "client", "busy_cpus")
    lines = [
        "CPU ms per answered film by thread (/proc/<pid>/task; lanes by OS name), and CPUs kept busy:",
        f"{'mode':<10}{'kind':<20}{'conc':>5}  " + " ".join(f"{n:>13}" for n in names),
    ]
    for c in rows:
        text = " ".join(f"{c['cpu_ms_per_film'][n]:>13}" for n in names)
        lines.append(f"{c['mode']:<10}{c['kind']:<20}{c['concurrency']:>5}  {text}")
    return lines


def parse_mode(text: str) -> Mode:
    """``name``, ``name:CXR_X=1,CXR_Y=2``; ``name@N[:...]`` = N pinned processes (a mode ``name@N``)."""
    name, _, assignments = text.partition(":")
    env = dict(pair.split("=", 1) for pair in assignments.split(",") if pair)
    _, at, processes = name.partition("@")
    if at and not (processes.isdigit() and int(processes) >= 1):
        raise argparse.ArgumentTypeError(f"{text!r}: after '@' comes the number of processes")
    return Mode(name, env, processes=int(processes) if at else 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a store version folder")
    parser.add_argument("--films", type=Path, default=DEFAULT_FILMS)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--kinds", nargs="+", default=list(DEFAULT_KINDS), choices=KINDS)
    parser.add_argument(
        "--overlay-kinds", nargs="*", default=["png-224"], choices=KINDS, help="kinds also run with overlays"
    )
    parser.add_argument("--overlay-concurrency", type=int, nargs="+", default=[8])
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (e.g. a git worktree of the commit before a change): its service runs "
        "first, as mode 'before', with the default settings",
    )
    parser.add_argument(
        "--mode",
        type=parse_mode,
        action="append",
        help="name[@N][:CXR_VAR=value,...]; repeatable (default: batched = the service defaults, and "
        "unbatched = CXR_MAX_BATCH_SIZE=1); @N: N services, each pinned to 1/N of the CPUs",
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="measured window per cell")
    parser.add_argument("--warmup", type=float, default=3.0, help="load before each window, not counted")
    parser.add_argument("--ceiling-seconds", type=float, default=5.0)
    parser.add_argument(
        "--provider",
        choices=["cpu", "cuda", "tensorrt"],
        default="cpu",
        help="cuda | tensorrt: the raw ceiling on that provider, and every mode's service started with "
        "CXR_EXECUTION_PROVIDER set to it (so it refuses to start rather than fall back to the CPU)",
    )
    parser.add_argument("--out", type=Path, help="writes OUT.json and OUT.txt")
    args = parser.parse_args(argv)
    if not args.films.is_dir():
        print(f"SKIPPED: film folder {args.films} is absent", file=sys.stderr)
        return 0
    if args.provider != "cpu":
        card = ModelCard.model_validate_json((args.model / CARD_FILENAME).read_text())
        try:
            gpu_providers(args.provider, card, 1)
        except ModelLoadError as exc:  # before minutes of film building and services starting
            print(f"bench.load --provider {args.provider}: {exc}", file=sys.stderr)
            return 2
    modes = tuple(args.mode) if args.mode else DEFAULT_MODES
    if args.baseline is not None:
        modes = (Mode("before", {}, args.baseline.resolve()), *modes)
    config = LoadConfig(
        model_dir=args.model,
        films_dir=args.films,
        concurrencies=tuple(args.concurrency),
        kinds=tuple(args.kinds),
        overlay_kinds=tuple(args.overlay_kinds),
        overlay_concurrencies=tuple(args.overlay_concurrency),
        modes=modes,
        seconds=args.seconds,
        warmup_s=args.warmup,
        ceiling_seconds=args.ceiling_seconds,
        provider=args.provider,
    )
    report = run_load(config)
    report["command"] = command_line("bench.load", argv)
    publish(report, format_report(report), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
