"""The service's own ``ModelRuntime`` on a GPU provider: fp32 against fp16, I/O binding on and off, at a
fixed batch and with the batch size changing from run to run as micro-batches do.

    python -m bench.gpu_runtime --models models/cxr-pneumonia/6 models/cxr-pneumonia/6-fp16 \\
        --films ../shared/data/kermany224/train --out reports/bench/runtime-gpu.json

Each cell runs ``ModelRuntime.infer_batch`` (session run, output checks, per-film results) for
``--seconds`` and reports films per second.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.ceiling import load_films
from service.inference.runtime import ModelRuntime
from service.settings import Settings
from service.store.verify import load_card

PATTERNS = {"fixed b32": [32], "b1..8 cycling": list(range(1, 9))}


def measure(runtime: ModelRuntime, films: npt.NDArray[np.float32], sizes: list[int], seconds: float) -> float:
    for size in sizes:  # warm-up: every shape once
        runtime.infer_batch(films[:size])
    done, calls, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        size = sizes[calls % len(sizes)]
        runtime.infer_batch(films[:size])
        done, calls = done + size, calls + 1
    return done / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_runtime", description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="store versions to compare")
    parser.add_argument("--films", type=Path, default=Path("../shared/data/kermany224/train"))
    parser.add_argument("--provider", choices=["cuda", "tensorrt", "cpu"], default="cuda")
    parser.add_argument("--pad", choices=["auto", "on", "off"], nargs="+", default=["off", "on"])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not args.films.is_dir():
        print(f"SKIPPED: film folder {args.films} is absent", file=sys.stderr)
        return 0
    results: dict[str, dict[str, object]] = {}
    for model_dir in args.models:
        films = load_films(args.films, max(max(sizes) for sizes in PATTERNS.values()), load_card(model_dir))
        for pad in args.pad:
            for binding in ("on", "off"):
                settings = Settings(
                    model_dir=model_dir,
                    execution_provider=args.provider,
                    io_binding=binding,
                    pad_batches=pad,
                    max_batch_size=32,
                )
                runtime = ModelRuntime.load(settings)
                for label, sizes in PATTERNS.items():
                    rate = measure(runtime, films, sizes, args.seconds)
                    key = f"{model_dir.name} pad={pad} io_binding={binding} {label}"
                    results[key] = {"provider": runtime.provider, "images_per_s": round(rate, 1)}
                    print(f"{key:<55}{runtime.provider:>24}{rate:>10.1f} img/s", flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
