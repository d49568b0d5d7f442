"""``python -m training evaluate --shift``: a model scored on validation films under acquisition
shifts at graded severities (``training.data.shifts``), the in-house stand-in for films from other sites.

Each film is decoded once through the contract, brought to [0, 1], shifted, and preprocessed again by
the contract's ``to_model_input``, as the service would preprocess a film that arrived shifted. AUC
and sensitivity/specificity at the model's operating point are reported per shift and severity,
pooled and per source; severity 0 is the unshifted films.
"""

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from service.contract import DecodedImage, ShiftBenchmark, ShiftResult, decode_image, to_model_input
from training.data.scan import Sample
from training.data.shifts import SEVERITIES, SHIFTS, Plane, to_unit
from training.stats.metrics import classification_metrics, per_source_metrics

log = logging.getLogger(__name__)

DEFAULT_FILMS = 300
# probabilities [N, C] from model inputs [N, 1, H, W]
PredictFunction = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float64]]


def choose_films(samples: Sequence[Sample], count: int, seed: int = 0) -> list[Sample]:
    """A seeded draw of ``count`` films, the same share from every (source, class) stratum."""
    if count >= len(samples):
        return list(samples)
    strata: dict[tuple[str, int], list[Sample]] = defaultdict(list)
    for sample in samples:
        strata[(sample.source, sample.label)].append(sample)
    rng = np.random.default_rng(seed)
    chosen: list[Sample] = []
    for key in sorted(strata):
        members = strata[key]
        take = max(1, round(count * len(members) / len(samples)))
        chosen += [
            members[i] for i in sorted(rng.choice(len(members), min(take, len(members)), replace=False))
        ]
    return chosen


def _planes(samples: Sequence[Sample]) -> list[tuple[Plane, DecodedImage]]:
    out = []
    for sample in samples:
        if sample.item is not None:
            raise ValueError("the shift benchmark reads image files; an .npz row has no file to shift")
        decoded = decode_image(sample.path.read_bytes())
        out.append((to_unit(decoded.pixels), decoded))
    return out


def shift_benchmark(
    predict: PredictFunction,
    samples: Sequence[Sample],
    *,
    size: int,
    positive_index: int,
    threshold: float,
    shifts: Sequence[str] | None = None,
) -> ShiftBenchmark:
    """Every shift in ``shifts`` (default: all of ``SHIFTS``) at every severity, on ``samples``."""
    names = list(shifts or SHIFTS)
    planes = _planes(samples)
    labels = np.array([s.label for s in samples], dtype=np.int64)
    sources = [s.source for s in samples]
    results: list[ShiftResult] = []
    started = time.perf_counter()
    conditions = [("none", 0)] + [(name, severity) for name in names for severity in SEVERITIES[1:]]
    for name, severity in conditions:
        transform = SHIFTS[name].at(severity) if name != "none" else (lambda plane: plane)
        inputs = np.stack(
            [
                to_model_input(DecodedImage(transform(plane), d.source_format), size, size)
                for plane, d in planes
            ]
        )
        probabilities = predict(inputs)
        metrics = classification_metrics(labels, probabilities, positive_index, threshold)
        per_source = per_source_metrics(labels, probabilities, sources, positive_index, threshold)
        results.append(
            ShiftResult(
                shift=name,
                severity=severity,
                setting="unshifted" if name == "none" else SHIFTS[name].describe(severity),
                auc=metrics["auc"],
                sensitivity=metrics.get("sensitivity"),
                specificity=metrics.get("specificity"),
                per_source_auc={k: v.auc for k, v in per_source.items()} if len(per_source) > 1 else {},
            )
        )
        log.info("shift %s severity %d: AUC %s", name, severity, metrics["auc"])
    log.info(
        "shift benchmark: %d conditions x %d films in %.0f s",
        len(conditions),
        len(samples),
        time.perf_counter() - started,
    )
    counts: dict[str, int] = defaultdict(int)
    for source in sources:
        counts[source or "all"] += 1
    return ShiftBenchmark(films=len(samples), per_source_films=dict(counts), results=results)


def summary_rows(benchmark: ShiftBenchmark) -> list[str]:
    """A Markdown table: one row per shift, AUC / sens / spec per severity."""
    by_shift: dict[str, dict[int, ShiftResult]] = defaultdict(dict)
    for result in benchmark.results:
        by_shift[result.shift][result.severity] = result
    base = by_shift["none"][0]

    def cell(r: ShiftResult | None) -> str:
        if r is None:
            return "-"
        return f"{_f(r.auc)} / {_f(r.sensitivity)} / {_f(r.specificity)}"

    sources = sorted(base.per_source_auc)
    header = "| shift | " + " | ".join(f"severity {s} (AUC / sens / spec)" for s in SEVERITIES[1:])
    header += " | worst AUC" + "".join(f" | worst AUC {s}" for s in sources) + " |"
    lines = [header, "|" + "---|" * (2 + len(SEVERITIES) + len(sources))]
    lines.append(
        f"| unshifted | {cell(base)} | | | {_f(base.auc)}"
        + "".join(f" | {_f(base.per_source_auc[s])}" for s in sources)
        + " |"
    )
    for name, rows in by_shift.items():
        if name == "none":
            continue
        worst = min((r.auc for r in rows.values() if r.auc is not None), default=None)
        per = [min((r.per_source_auc.get(s) or 0.0 for r in rows.values()), default=0.0) for s in sources]
        lines.append(
            f"| {name} | "
            + " | ".join(cell(rows.get(s)) for s in SEVERITIES[1:])
            + f" | {_f(worst)}"
            + "".join(f" | {_f(p)}" for p in per)
            + " |"
        )
    return lines


def headline(benchmark: ShiftBenchmark) -> str:
    """One line: unshifted AUC, the mean and worst AUC over every shifted condition."""
    base = next(r for r in benchmark.results if r.severity == 0)
    shifted = [r for r in benchmark.results if r.severity > 0 and r.auc is not None]
    aucs = [r.auc for r in shifted if r.auc is not None]
    worst = min(shifted, key=lambda r: r.auc or 0.0)
    spec = [r.specificity for r in shifted if r.specificity is not None]
    return (
        f"unshifted AUC {_f(base.auc)}; shifted mean AUC {np.mean(aucs):.3f}, worst {_f(worst.auc)} "
        f"({worst.shift} {worst.setting}); mean specificity at the operating point {np.mean(spec):.3f} "
        f"(unshifted {_f(base.specificity)})"
    )


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def plot_benchmark(benchmark: ShiftBenchmark, path: Path) -> None:
    """AUC and specificity at the operating point against severity, one line per shift."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = next(r for r in benchmark.results if r.severity == 0)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    by_shift: dict[str, list[ShiftResult]] = defaultdict(list)
    for r in benchmark.results:
        if r.severity > 0:
            by_shift[r.shift].append(r)
    for name, rows in by_shift.items():
        xs = [0] + [r.severity for r in rows]
        axes[0].plot(xs, [base.auc] + [r.auc for r in rows], marker="o", label=name)
        axes[1].plot(xs, [base.specificity] + [r.specificity for r in rows], marker="o", label=name)
    axes[0].set(title="AUC under shift", xlabel="severity", ylabel="AUC")
    axes[1].set(title="specificity at the operating point", xlabel="severity", ylabel="specificity")
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
