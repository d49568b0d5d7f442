"""Raw ONNX Runtime ceiling, INT8 speed-up and the cost of the in-graph Grad-CAM, in one run.

    python -m bench.ceiling --model models/cxr-pneumonia/5 --int8 models/cxr-pneumonia/5-int8 \\
        --torch-run runs/kermany-default --out reports/bench/ceiling.json
    # on a GPU machine (CUDA or TensorRT), with the fp16 version:
    python -m bench.ceiling --provider cuda --model models/cxr-pneumonia/6 \\
        --fp16 models/cxr-pneumonia/6-fp16 --batches 1 8 32 128 --out reports/bench/ceiling-gpu.json

Inputs are real films pushed through the preprocessing contract (so the tensors are what the service
feeds the graph). Every variant is timed in interleaved rounds, so a noisy neighbour slows all of them
alike and the ratios - the figures that matter - stay meaningful on a shared machine.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from bench.films import film_paths
from bench.output import command_line
from service.contract import ModelCard, load_model_input
from service.contract.model_card import CAM_OUTPUT, CARD_FILENAME, ONNX_FILENAME, PROBABILITIES_OUTPUT
from service.inference.cpus import available_cpus
from service.inference.providers import CPU, ProviderSpec, execution_providers, session_options
from service.settings import Settings

Tensor = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Variant:
    name: str
    batch: int
    step: Callable[[], object]
    lanes: int = 1  # threads calling ``step`` at once, as the service's lanes call session.run


def session(
    path: Path, threads: int, providers: list[ProviderSpec] | None = None, *, spinning: bool = True
) -> ort.InferenceSession:
    """A session as the service makes it (``service.inference.providers.session_options``);
    threads 0 = every CPU this process may use (one run at a time; the service's lanes share them
    out instead); ``spinning``: ONNX Runtime's threads busy-wait for work (its default)."""
    options = session_options(Settings(intra_op_threads=threads or available_cpus(), ort_spinning=spinning))
    return ort.InferenceSession(str(path), options, providers=providers or [CPU])


def providers_for(provider: str, card: ModelCard, max_batch: int, cudnn_search: str) -> list[ProviderSpec]:
    """The service's own provider list for ``provider`` (TensorRT: its cache and batch profile)."""
    settings = Settings(
        execution_provider=provider, max_batch_size=max_batch, cudnn_conv_algo_search=cudnn_search
    )
    return execution_providers(settings, card, ort.get_available_providers())


def load_films(folder: Path, count: int, card: ModelCard) -> Tensor:
    """``count`` tensors from real films under ``folder`` (cycled if there are fewer)."""
    paths = film_paths(folder, count)
    if not paths:
        raise FileNotFoundError(f"no films under {folder}")
    return film_tensors([p.read_bytes() for p in paths], count, card)


def film_tensors(films: list[bytes], count: int, card: ModelCard) -> Tensor:
    """``count`` model inputs ``[count, 1, H, W]`` from ``films`` through the contract, cycled."""
    contract = card.pixel_contract
    tensors = [load_model_input(film, contract.height, contract.width)[0] for film in films[:count]]
    return np.stack([tensors[i % len(tensors)] for i in range(count)])


def _subgraph(model: Path, outputs: list[str], folder: Path) -> Path:
    """The graph cut down to ``outputs``: ORT runs every node, so forward-only needs its own file."""
    target = folder / f"{'-'.join(outputs)}.onnx"
    onnx.utils.extract_model(str(model), str(target), ["image"], outputs)
    return target


def time_variants(variants: list[Variant], seconds: float, rounds: int) -> dict[str, dict[str, float]]:
    """Round-robin timing; per variant images/s and per-call latency percentiles (ms). A variant
    with lanes runs ``step`` on that many threads at once, each back to back, for its slice."""
    latencies: dict[str, list[float]] = {v.name: [] for v in variants}
    busy: dict[str, float] = {v.name: 0.0 for v in variants}
    for variant in variants:
        variant.step()  # warm-up: allocations, kernel selection
    for _ in range(rounds):
        for variant in variants:
            deadline = time.perf_counter() + seconds / rounds
            if variant.lanes == 1:
                busy[variant.name] += _calls_until(variant.step, deadline, latencies[variant.name])
                continue
            started = time.perf_counter()
            threads = [
                threading.Thread(target=_calls_until, args=(variant.step, deadline, latencies[variant.name]))
                for _ in range(variant.lanes)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            busy[variant.name] += time.perf_counter() - started  # wall time: the lanes overlap
    results = {}
    for variant in variants:
        calls = np.array(latencies[variant.name]) * 1000.0
        results[variant.name] = {
            "batch": variant.batch,
            "calls": len(calls),
            "images_per_s": variant.batch * len(calls) / busy[variant.name],
            "p50_ms": float(np.percentile(calls, 50)),
            "p95_ms": float(np.percentile(calls, 95)),
        }
    return results


def _calls_until(step: Callable[[], object], deadline: float, latencies: list[float]) -> float:
    """Call ``step`` back to back until ``deadline``; appends each call's seconds, returns their sum."""
    total = 0.0
    while True:
        start = time.perf_counter()
        step()
        end = time.perf_counter()
        latencies.append(end - start)  # list.append is atomic: lanes may share the list
        total += end - start
        if end >= deadline:
            return total


def _torch_variants(run_dir: Path, films: Tensor, batches: list[int], threads: int) -> list[Variant]:
    """The same trained model in PyTorch: forward only, and pytorch-grad-cam's backward-based GradCAM."""
    import torch
    from pytorch_grad_cam import GradCAM

    from training.fit.checkpoint import load_trained_model

    if threads:
        torch.set_num_threads(threads)
    model, _, _ = load_trained_model(run_dir)
    grad_cam = GradCAM(model=model, target_layers=[model.features])
    variants = []
    for batch in batches:
        x = torch.from_numpy(films[:batch])

        def forward(x: "torch.Tensor" = x) -> object:
            with torch.no_grad():
                return model(x)

        variants.append(Variant(f"torch forward b{batch}", batch, forward))
        variants.append(
            Variant(
                f"torch grad-cam package b{batch}", batch, partial(grad_cam, input_tensor=x, targets=None)
            )
        )
    return variants


def run_benchmark(
    model_dir: Path,
    films_dir: Path,
    *,
    int8_dir: Path | None = None,
    fp16_dir: Path | None = None,
    provider: str = "cpu",
    cudnn_search: str = "heuristic",
    torch_run: Path | None = None,
    batches: tuple[int, ...] = (1, 8, 32),
    seconds: float = 10.0,
    rounds: int = 5,
    threads: int = 0,
) -> dict[str, Any]:
    card = ModelCard.model_validate_json((model_dir / CARD_FILENAME).read_text())
    films = load_films(films_dir, max(batches), card)
    with tempfile.TemporaryDirectory() as scratch:
        full = model_dir / ONNX_FILENAME
        forward = _subgraph(full, [PROBABILITIES_OUTPUT], Path(scratch))
        with_cam = _subgraph(full, [PROBABILITIES_OUTPUT, CAM_OUTPUT], Path(scratch))
        graphs = {"fp32 full graph": full, "fp32 forward only": forward, "fp32 forward + cam": with_cam}
        if int8_dir is not None:
            graphs["int8 full graph"] = int8_dir / ONNX_FILENAME
        if fp16_dir is not None:
            graphs["fp16 full graph"] = fp16_dir / ONNX_FILENAME
        providers = providers_for(provider, card, max(batches), cudnn_search)
        # One session per graph and batch: on CUDA every change of input shape re-plans the graph
        # (seconds for fp16), which a shared session would time as if it were the model.
        sessions = {
            (name, batch): session(path, threads, providers)
            for batch in batches
            for name, path in graphs.items()
        }
    variants = [
        Variant(f"{name} b{batch}", batch, partial(s.run, None, {"image": films[:batch]}))
        for (name, batch), s in sessions.items()
    ]
    if torch_run is not None:
        variants += _torch_variants(torch_run, films, [1, max(batches)], threads)
    results = time_variants(variants, seconds, rounds)
    return {
        "model": f"{card.name} {card.version}",
        "int8_model": str(int8_dir) if int8_dir else None,
        "fp16_model": str(fp16_dir) if fp16_dir else None,
        "provider": next(iter(sessions.values())).get_providers()[0],
        "cudnn_conv_algo_search": cudnn_search if provider != "cpu" else None,
        "onnxruntime": ort.__version__,
        "machine": f"{platform.processor() or platform.machine()}, {_cpu_count()} CPUs visible",
        "threads": threads or available_cpus(),
        "results": results,
        "ratios": ratios(results, batches, int8_dir is not None, torch_run is not None, fp16_dir is not None),
    }


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def ratios(
    results: dict[str, dict[str, float]],
    batches: tuple[int, ...],
    int8: bool,
    torch_run: bool,
    fp16: bool = False,
) -> dict[str, float]:
    def ips(name: str) -> float:
        return results[name]["images_per_s"]

    def p50(name: str) -> float:
        return results[name]["p50_ms"]

    out: dict[str, float] = {}
    for b in batches:
        out[f"cam overhead b{b} (forward+cam / forward latency - 1)"] = (
            p50(f"fp32 forward + cam b{b}") / p50(f"fp32 forward only b{b}") - 1
        )
        out[f"full graph overhead b{b} (cam + OOD)"] = (
            p50(f"fp32 full graph b{b}") / p50(f"fp32 forward only b{b}") - 1
        )
        if int8:
            out[f"int8 / fp32 throughput b{b}"] = ips(f"int8 full graph b{b}") / ips(f"fp32 full graph b{b}")
        if fp16:
            out[f"fp16 / fp32 throughput b{b}"] = ips(f"fp16 full graph b{b}") / ips(f"fp32 full graph b{b}")
    if torch_run:
        for b in (1, max(batches)):
            out[f"grad-cam package / in-graph cam latency b{b}"] = p50(f"torch grad-cam package b{b}") / p50(
                f"fp32 forward + cam b{b}"
            )
            out[f"grad-cam package / torch forward latency b{b}"] = p50(f"torch grad-cam package b{b}") / p50(
                f"torch forward b{b}"
            )
    return out


def format_report(report: dict[str, Any]) -> str:
    provider = report.get("provider", "CPUExecutionProvider")
    lines = [f"{report['model']} | onnxruntime {report['onnxruntime']} {provider} | {report['machine']}"]
    lines.append(f"{'variant':<40}{'images/s':>10}{'p50 ms':>10}{'p95 ms':>10}")
    for name, r in report["results"].items():
        lines.append(f"{name:<40}{r['images_per_s']:>10.1f}{r['p50_ms']:>10.2f}{r['p95_ms']:>10.2f}")
    lines.append("ratios:")
    lines += [f"  {name}: {value:.3f}" for name, value in report["ratios"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="fp32 store version")
    parser.add_argument("--int8", type=Path, help="its int8 version (python -m training quantize)")
    parser.add_argument("--fp16", type=Path, help="its fp16 version (quantize --precision fp16)")
    parser.add_argument("--provider", choices=["cpu", "cuda", "tensorrt"], default="cpu")
    parser.add_argument("--cudnn-search", choices=["heuristic", "exhaustive", "default"], default="heuristic")
    parser.add_argument("--torch-run", type=Path, help="the run folder, to time pytorch-grad-cam")
    parser.add_argument("--films", type=Path, default=Path("../shared/data/kermany224/train"))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=10.0, help="per variant, over all rounds")
    parser.add_argument("--threads", type=int, default=0, help="0 = every CPU this process may use")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not args.films.is_dir():
        print(f"SKIPPED: film folder {args.films} is absent", file=sys.stderr)
        return 0
    report = run_benchmark(
        args.model,
        args.films,
        int8_dir=args.int8,
        fp16_dir=args.fp16,
        provider=args.provider,
        cudnn_search=args.cudnn_search,
        torch_run=args.torch_run,
        batches=tuple(args.batches),
        seconds=args.seconds,
        threads=args.threads,
    )
    report["command"] = command_line("bench.ceiling", argv)
    text = format_report(report)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        args.out.with_suffix(".txt").write_text(f"$ {report['command']}\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
