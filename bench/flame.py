"""A py-spy flame graph of the real service under load, and its hottest frames as a table.

    pip install py-spy   # not a dependency of the project: a profiler, installed where it is used
    python -m bench.flame --model models/cxr-pneumonia/<version> --kind png-224 --overlay \\
        --concurrency 32 --seconds 20 --out reports/bench/flame-png224-overlay

``python -m service`` runs as deployed (authentication on) under ``bench.http_load`` while py-spy
samples it (``--nonblocking``: the service is never paused; idle threads are not sampled, so a frame's
share is of the time some thread was working or holding the GIL). py-spy runs twice on the same
load: once writing the SVG flame graph, once the collapsed stacks from which the table is made: the
share of samples in each part of the request path, each sample counted once (``PARTS``).
"""

import argparse
import asyncio
import json
import shlex
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.films import RASTER_SUFFIXES, film_paths, full_size_dicom, full_size_png, grey_png
from bench.http_load import drive, predict_request
from bench.load import DEFAULT_FILMS, KINDS
from bench.service_process import running_service

# Parts of the request path, each recognised by a substring of a frame ("function (file:line)").
# A sample counts once, in the first part (in this order) that its stack passes through: the
# specific work first, then the layers that wrap every request (middleware, ASGI, HTTP, the loop).
PARTS = {
    "inference: onnxruntime": ("onnxruntime",),
    "overlay: PNG encode": ("encode_png", "film_png"),
    "overlay: colour map + blend": ("overlay_pixels",),
    "base64": ("_b64",),
    "decode + preprocess (worker thread)": ("_prepare (",),
    "upload: multipart parse": ("multipart", "formparsers", "read_upload"),
    "api key check": ("service/security/api_keys",),
    "response: pydantic + json": ("_json_response", "serialize_response", "pydantic"),
    "logging + audit line": ("logging/", "service/observability/logs", "log_request"),
    "metrics: prometheus": ("prometheus_client",),
    "predict route, other": ("service/api/routes/predict",),
    "asgi: middleware, starlette, fastapi": (
        "service/api/middleware",
        "service/security",
        "starlette/",
        "fastapi/",
    ),
    "http: uvicorn + h11": ("h11", "uvicorn/"),
    "event loop + thread hand-offs": ("anyio/", "asyncio/", "uvloop", "concurrent/futures", "threading.py"),
}
OTHER = "other"
# Within decode + preprocess: which library the time is in (a share of all samples, not exclusive).
DECODE_LIBRARIES = {"  of which pydicom": "pydicom", "  of which PIL": "PIL/", "  of which numpy": "numpy/"}


def _films(kind: str, films_dir: Path, count: int) -> list[bytes]:
    sources = [p.read_bytes() for p in film_paths(films_dir, count, RASTER_SUFFIXES)]
    convert: dict[str, Callable[[bytes], bytes]] = {
        "png-224": grey_png,
        "jpeg-224": bytes,
        "png-full": full_size_png,
        "dicom-full": full_size_dicom,
    }
    return [convert[kind](s) for s in sources]


def _load(url: str, requests: list[bytes], concurrency: int, seconds: float, stop: threading.Event) -> None:
    while not stop.is_set():
        asyncio.run(drive(url, requests, concurrency, seconds, 0.0))


def table(collapsed: str) -> dict[str, float]:
    """Share of samples (percent) in each part, from py-spy's raw (collapsed stacks) output."""
    total, hits = 0, Counter[str]()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        part = next((p for p, needles in PARTS.items() if any(n in stack for n in needles)), OTHER)
        hits[part] += int(count)
        if part.startswith("decode"):
            for name, needle in DECODE_LIBRARIES.items():
                if needle in stack:
                    hits[name] += int(count)
    names = [*PARTS, OTHER, *DECODE_LIBRARIES]
    return {name: round(100.0 * hits[name] / total, 1) if total else 0.0 for name in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flame", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--films", type=Path, default=DEFAULT_FILMS)
    parser.add_argument("--kind", choices=KINDS, default="png-224")
    parser.add_argument("--overlay", action="store_true")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0, help="per py-spy run (two runs)")
    parser.add_argument("--max-films", type=int, default=16)
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.svg, OUT.txt and OUT.json")
    args = parser.parse_args(argv)
    if shutil.which(args.py_spy) is None:
        print(f"SKIPPED: {args.py_spy} not found (pip install py-spy)", file=sys.stderr)
        return 0
    if not args.films.is_dir():
        print(f"SKIPPED: film folder {args.films} is absent", file=sys.stderr)
        return 0
    films = _films(args.kind, args.films, args.max_films)
    query = f"overlay={str(args.overlay).lower()}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    with running_service(args.model) as service:
        requests = [predict_request(service.url, f, dict(service.headers), query) for f in films]
        stop = threading.Event()
        load = threading.Thread(
            target=_load, args=(service.url, requests, args.concurrency, 5.0, stop), daemon=True
        )
        load.start()
        try:
            record = [args.py_spy, "record", "--pid", str(service.pid), "--nonblocking", "--rate", "100"]
            record += ["--duration", str(int(args.seconds))]
            svg, raw = args.out.with_suffix(".svg"), args.out.with_suffix(".collapsed")
            subprocess.run(
                [*record, "--format", "flamegraph", "-o", str(svg)], check=True, capture_output=True
            )
            subprocess.run([*record, "--format", "raw", "-o", str(raw)], check=True, capture_output=True)
        finally:
            stop.set()
            load.join(timeout=60)
    shares = table(raw.read_text())
    raw.unlink()  # the SVG holds the same stacks; the table below is what is kept of them
    command = "python -m bench.flame " + shlex.join(argv if argv is not None else sys.argv[1:])
    report: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "command": command,
        "kind": args.kind,
        "overlay": args.overlay,
        "concurrency": args.concurrency,
        "share_of_samples_percent": shares,
    }
    lines = [
        f"flame {report['started_at']} | {args.kind} overlay={args.overlay} c{args.concurrency}",
        f"command: {command}",
    ]
    lines += [f"{part:<42}{share:>6.1f} %" for part, share in shares.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.with_suffix(".txt").write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
