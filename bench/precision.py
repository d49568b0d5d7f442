"""fp32 against int8 on the CPU, as the service runs them: which one should the repository release?

    python -m bench.precision --fp32 models/cxr-pneumonia/V --int8 models/cxr-pneumonia/V-int8 \\
        (--run runs/<run> | --films <root>/<CLASS>/) [--limit 300] [--out precision.json]

For each version: file size, load time (``ModelRuntime.load``: hash, checks, session, warm-up; median
of a few loads), single-film latency of ``infer`` (median and p90; batch 1, the demo's and a quiet
department's case) and batch-8 throughput. Then agreement on the same films: the share called
alike at each card's own operating point, the largest probability difference, the mean Pearson r of
the Grad-CAM maps, the OOD refusals of each, and each one's AUC on the films (labels from the folders or
the run's split). The int8 card's own validation figures (``quantisation``) stand beside them in the card.
"""

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.inference.runtime import Inference, ModelRuntime
from service.settings import Settings
from service.store.verify import load_card
from training.evaluation.films import EvaluationFilms, films_from_folder, films_from_run
from training.stats.metrics import auc

_LOADS = 3
_LATENCY_ROUNDS = 40
_BATCH = 8


def _settings(model_dir: Path) -> Settings:
    return Settings(model_dir=model_dir, execution_provider="cpu", auth="disabled")


def load_seconds(model_dir: Path) -> float:
    times = []
    for _ in range(_LOADS):
        start = time.perf_counter()
        ModelRuntime.load(_settings(model_dir))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def latency(runtime: ModelRuntime, films: npt.NDArray[np.float32]) -> dict[str, float]:
    singles = []
    for i in range(_LATENCY_ROUNDS):
        film = films[i % len(films)]  # one film, [1, H, W]
        start = time.perf_counter()
        runtime.infer(film)
        singles.append((time.perf_counter() - start) * 1000)
    batch = films[:_BATCH]
    start = time.perf_counter()
    rounds = max(1, _LATENCY_ROUNDS // _BATCH)
    for _ in range(rounds):
        runtime.infer_batch(batch)
    per_film = (time.perf_counter() - start) * 1000 / (rounds * len(batch))
    singles.sort()
    return {
        "batch1_median_ms": statistics.median(singles),
        "batch1_p90_ms": singles[int(0.9 * (len(singles) - 1))],
        f"batch{_BATCH}_ms_per_film": per_film,
    }


def infer_all(runtime: ModelRuntime, films: npt.NDArray[np.float32]) -> list[Inference]:
    results: list[Inference] = []
    for start in range(0, len(films), _BATCH):
        for result in runtime.infer_batch(films[start : start + _BATCH]):
            if not isinstance(result, Inference):
                raise RuntimeError(f"inference failed: {result}")
            results.append(result)
    return results


def compare(fp32_dir: Path, int8_dir: Path, films: EvaluationFilms, limit: int) -> dict[str, Any]:
    """Both versions on the same films (an even draw of at most ``limit``), as the service runs them."""
    chosen = np.unique(np.linspace(0, len(films.paths) - 1, min(limit, len(films.paths))).round().astype(int))
    labels = films.labels[chosen]
    report: dict[str, Any] = {
        "films": {"source": films.source, "count": len(chosen)},
        "cpu_threads": "ONNX Runtime default (all cores)",
        "versions": {},
    }
    outcomes: dict[str, list[Inference]] = {}
    runtimes: dict[str, ModelRuntime] = {}
    for label, model_dir in (("fp32", fp32_dir), ("int8", int8_dir)):
        runtime = ModelRuntime.load(_settings(model_dir))
        runtimes[label] = runtime
        if runtime.card.class_names != films.class_names:
            raise ValueError(
                f"{model_dir} has classes {runtime.card.class_names}, the films {films.class_names}"
            )
        contract = runtime.card.pixel_contract
        inputs = films.inputs(contract.height, contract.width)[chosen]
        outcomes[label] = infer_all(runtime, inputs)
        report["versions"][label] = {
            "version": runtime.card.version,
            "model_bytes": (model_dir / "model.onnx").stat().st_size,
            "load_s_median": load_seconds(model_dir),
            **latency(runtime, inputs),
        }
    decisions = {k: [runtimes[k].decide(r.probabilities) for r in v] for k, v in outcomes.items()}
    probabilities = {k: np.stack([r.probabilities for r in v]) for k, v in outcomes.items()}
    cams = {k: np.stack([r.cams for r in v]) for k, v in outcomes.items()}
    truth = [films.class_names[i] for i in labels]
    for k, results in outcomes.items():
        report["versions"][k]["auc_on_films"] = auc(labels, probabilities[k].astype(np.float64))
        report["versions"][k]["accuracy_at_operating_point"] = float(
            np.mean([d == t for d, t in zip(decisions[k], truth, strict=True)])
        )
        report["versions"][k]["ood_refused"] = sum(runtimes[k].is_out_of_distribution(r) for r in results)
    alike = [a == b for a, b in zip(decisions["fp32"], decisions["int8"], strict=True)]
    report["agreement"] = {
        "decisions_alike": float(np.mean(alike)),
        "max_probability_difference": float(np.abs(probabilities["fp32"] - probabilities["int8"]).max()),
        "cam_correlation": _cam_correlation(cams["fp32"], cams["int8"]),
    }
    return report


def _cam_correlation(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    x = a.reshape(a.shape[0] * a.shape[1], -1).astype(np.float64)
    y = b.reshape(x.shape).astype(np.float64)
    x -= x.mean(axis=1, keepdims=True)
    y -= y.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
    r = np.where(norms > 0, np.sum(x * y, axis=1) / np.where(norms > 0, norms, 1.0), 1.0)
    return float(r.mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", type=Path, required=True)
    parser.add_argument("--int8", type=Path, required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--films", type=Path, help="<root>/<CLASS>/ films")
    source.add_argument("--run", type=Path, help="the validation split of this run folder")
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    class_names = load_card(args.fp32).class_names
    if args.films is not None:
        films = films_from_folder(args.films, class_names)
    else:
        films = films_from_run(args.run, class_names)
    report = compare(args.fp32, args.int8, films, args.limit)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
