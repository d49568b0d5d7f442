"""Peak and settled memory of the real service under bursts of worst-case uploads (issue 15).

``python -m bench.upload_memory --model DIR --out reports/bench/upload-memory``

Starts ``python -m service`` once per allocator configuration and, three times in a row, sends 16
concurrent uploads of each worst case, sampling the process's RSS every 10 ms:

* ``png-rgba-7071-zeros``: a 194 KB RGBA PNG of 7071 x 7071 zeros, inside the 50 Mpx budget; before
  the byte budget it cost ~800 MB per request. Now refused from its header (decoded_too_large).
* ``png-grey16-7071``: the largest film the default limits accept, 16-bit grey at 7071 x 7071
  (100 MB decoded), decoded in full by every request.

Settled RSS is read after the burst and 3 s of idling. Configurations: the default (glibc, heap
trimmed when idle), trimming off, and trimming off with ``MALLOC_ARENA_MAX=2``.
"""

import argparse
import json
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.service_process import REPO_ROOT, RunningService, running_service

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_CONCURRENCY = 16
_BURSTS = 3
_SETTLE_S = 3.0
# A long deadline: on a loaded 2-core machine 16 films of 7071 x 7071 take longer than the default
# 30 s, and the burst is about memory, not latency.
_DEADLINE = {"CXR_REQUEST_TIMEOUT_S": "300"}
_CONFIGS: dict[str, dict[str, str]] = {
    "default (trim when idle)": _DEADLINE,
    "no trim": {**_DEADLINE, "CXR_TRIM_HEAP_WHEN_IDLE": "false"},
    "no trim, MALLOC_ARENA_MAX=2": {**_DEADLINE, "CXR_TRIM_HEAP_WHEN_IDLE": "false", "MALLOC_ARENA_MAX": "2"},
}


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def flat_png(side: int, bit_depth: int, color_type: int, channels: int) -> bytes:
    """A complete PNG of zeros, compressed row by row (never the whole image in memory)."""
    row = b"\x00" * (1 + side * channels * bit_depth // 8)
    deflate = zlib.compressobj(9)
    stream = b"".join(deflate.compress(row) for _ in range(side)) + deflate.flush()
    header = struct.pack(">IIBBBBB", side, side, bit_depth, color_type, 0, 0, 0)
    return _PNG_MAGIC + _chunk(b"IHDR", header) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")


UPLOADS: dict[str, Callable[[], bytes]] = {
    "png-rgba-7071-zeros": lambda: flat_png(7071, 8, 6, 4),
    "png-grey16-7071": lambda: flat_png(7071, 16, 0, 1),
}


def _burst(service: RunningService, data: bytes) -> dict[str, object]:
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(service.rss_mb())
            time.sleep(0.01)

    def post(_: int) -> int:
        with httpx.Client(base_url=service.url, headers=service.headers, timeout=600) as client:
            response = client.post("/v1/predict", files={"file": ("f.png", data, "image/png")})
            return response.status_code

    sampler = threading.Thread(target=sample, daemon=True)
    before = service.rss_mb()
    sampler.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(_CONCURRENCY) as pool:
        statuses = list(pool.map(post, range(_CONCURRENCY)))
    seconds = time.perf_counter() - started
    time.sleep(_SETTLE_S)
    stop.set()
    sampler.join()
    return {
        "rss_before_mb": round(before, 1),
        "rss_peak_mb": round(max(samples), 1),
        "rss_settled_mb": round(service.rss_mb(), 1),
        "statuses": sorted(set(statuses)),
        "seconds": round(seconds, 2),
    }


def run(model: Path) -> dict[str, object]:
    uploads = {name: build() for name, build in UPLOADS.items()}
    results: dict[str, object] = {}
    for config, env in _CONFIGS.items():
        with running_service(model, env) as service:
            with httpx.Client(base_url=service.url, headers=service.headers, timeout=60) as client:
                client.post("/v1/predict", files={"file": ("f.png", _small(), "image/png")})  # warm-up
            time.sleep(1.0)
            cells: dict[str, object] = {"rss_idle_mb": round(service.rss_mb(), 1)}
            for name, data in uploads.items():
                cells[name] = [_burst(service, data) for _ in range(_BURSTS)]
            results[config] = cells
        print(json.dumps({config: results[config]}, indent=1), flush=True)
    return {
        "command": " ".join(["python -m bench.upload_memory", *sys.argv[1:]]),
        "concurrency": _CONCURRENCY,
        "bursts": _BURSTS,
        "settle_s": _SETTLE_S,
        "upload_bytes": {name: len(data) for name, data in uploads.items()},
        "results": results,
    }


def _small() -> bytes:
    return flat_png(256, 8, 0, 1)


def _table(report: dict[str, object]) -> str:
    lines = [
        f"command: {report['command']}",
        f"{report['concurrency']} concurrent uploads per burst, {report['bursts']} bursts, settled = "
        f"{report['settle_s']} s after a burst",
        "",
        "| configuration | upload | statuses | RSS idle MB | peak MB per burst | settled MB per burst |",
        "| --- | --- | --- | ---: | --- | --- |",
    ]
    results = report["results"]
    assert isinstance(results, dict)
    for config, cells in results.items():
        for name in UPLOADS:
            bursts = cells[name]
            peaks = ", ".join(str(b["rss_peak_mb"]) for b in bursts)
            settled = ", ".join(str(b["rss_settled_mb"]) for b in bursts)
            statuses = sorted({s for b in bursts for s in b["statuses"]})
            lines.append(f"| {config} | {name} | {statuses} | {cells['rss_idle_mb']} | {peaks} | {settled} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "bench" / "upload-memory")
    args = parser.parse_args()
    report = run(args.model)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".txt").write_text(_table(report))
    print(_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
