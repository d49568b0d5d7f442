"""The grid's comparison: ``results.csv``, ``results.md`` and two figures, written from the cells'
``result.json`` files. Collapsed and failed cells are listed apart and never ranked."""

import csv
import shutil
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from training.stats.metrics import format_metric
from training.study.spec import CellResult, GridSpec

TABLE_METRICS = (
    "auc",
    "accuracy",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "precision",
    "f1",
    "cross_entropy",
    "ece",
)
COMPARISON_PNG = "comparison.png"
BEST_DIR = "best"
# The best cell's figures, copied beside the table. Not its Grad-CAM gallery: that shows dataset
# films, and the data is never committed.
BEST_FIGURES = ("training_curves.png", "roc.png", "confusion_matrix.png", "reliability.png")
COST_PNG = "score_vs_training_time.png"


def ranked(results: list[CellResult], rank_by: str) -> list[CellResult]:
    """Cells that trained and did not collapse, best first; nothing else gets a rank."""
    ok = [r for r in results if r.status == "ok" and r.metrics.get(rank_by) is not None]
    return sorted(ok, key=lambda r: -(r.metrics[rank_by] or 0.0))


def _ci(result: CellResult, metric: str) -> str:
    interval = result.confidence_intervals.get(metric)
    return "" if interval is None else f"{interval[0]:.3f}-{interval[1]:.3f}"


def _settings(result: CellResult) -> str:
    return ", ".join(f"{k}={v}" for k, v in result.settings.items())


def write_csv(spec: GridSpec, results: list[CellResult], path: Path) -> None:
    order = {r.cell: i + 1 for i, r in enumerate(ranked(results, spec.rank_by))}
    setting_keys = list(dict.fromkeys(k for r in results for k in r.settings))
    columns = ["rank", "cell", "status", *setting_keys, "backbone", "weights", "report_split"]
    columns += [*TABLE_METRICS, f"{spec.rank_by}_ci_low", f"{spec.rank_by}_ci_high"]
    columns += ["majority_accuracy", "majority_auc", "validation_auc", "best_epoch", "epochs_run"]
    columns += ["train_seconds", "wall_seconds", "ms_per_image", "parameters", "flops_per_image", "message"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for r in results:
            interval = r.confidence_intervals.get(spec.rank_by)
            row: dict[str, Any] = {
                "rank": order.get(r.cell, ""),
                "cell": r.cell,
                "status": r.status,
                **{k: r.settings.get(k, "") for k in setting_keys},
                "backbone": r.backbone,
                "weights": r.weights,
                "report_split": r.report_split,
                **{m: r.metrics.get(m) for m in TABLE_METRICS},
                f"{spec.rank_by}_ci_low": interval[0] if interval else None,
                f"{spec.rank_by}_ci_high": interval[1] if interval else None,
                "majority_accuracy": r.majority_baseline.get("accuracy"),
                "majority_auc": r.majority_baseline.get("auc"),
                "validation_auc": r.validation_auc,
                "best_epoch": r.best_epoch,
                "epochs_run": r.epochs_run,
                "train_seconds": r.train_seconds,
                "wall_seconds": round(r.wall_seconds, 1),
                "ms_per_image": r.ms_per_image,
                "parameters": r.parameters,
                "flops_per_image": r.flops_per_image,
                "message": (r.message or "").splitlines()[0] if r.message else "",
            }
            writer.writerow(row)


def _markdown(spec: GridSpec, results: list[CellResult], spec_path: str) -> str:
    """``results.md``, top to bottom: long because it is the document's outline, one block per section."""
    best = ranked(results, spec.rank_by)
    collapsed = [r for r in results if r.status == "collapsed"]
    failed = [r for r in results if r.status == "failed"]
    done = [r for r in results if r.report_split]
    split = done[0].report_split if done else "validation"
    baseline = done[0].majority_baseline if done else {}
    lines = [f"# Study: {spec.name}", ""]
    if spec.description:
        lines += [spec.description.strip(), ""]
    total = sum(r.wall_seconds for r in results)
    lines += [f"Command: `python -m training grid {spec_path}`", ""]
    lines += [
        f"{len(results)} cells: {len(best)} ranked, {len(collapsed)} collapsed (not ranked), "
        f"{len(failed)} failed. Sum of cell wall times: {total / 60:.1f} min.",
        f"Metrics on the **{split}** split at each model's validation operating point; ranked by "
        f"`{spec.rank_by}` with its bootstrap 95% interval.",
        "",
    ]
    header = [
        "rank",
        "cell",
        *(m for m in TABLE_METRICS),
        f"{spec.rank_by} 95% CI",
        "train s",
        "ms/img",
        "params",
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    base_cells = [
        "-",
        "**majority-class baseline**",
        *(format_metric(baseline.get(m)) for m in TABLE_METRICS),
    ]
    lines.append("| " + " | ".join([*base_cells, "", "", "", ""]) + " |")
    for rank, r in enumerate(best, 1):
        cells = [str(rank), r.cell, *(format_metric(r.metrics.get(m)) for m in TABLE_METRICS)]
        cells += [
            _ci(r, spec.rank_by),
            f"{r.train_seconds or 0:.0f}",
            _fmt(r.ms_per_image),
            _count(r.parameters),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if collapsed:
        lines += ["", "## COLLAPSED: not ranked", ""]
        lines += [
            "These models predict one class for every film at their operating point; their accuracy is the "
            "majority-class rate, not skill.",
            "",
            "| cell | accuracy | majority accuracy | auc | settings |",
            "|---|---|---|---|---|",
        ]
        for r in collapsed:
            accuracy, majority = r.metrics.get("accuracy"), r.majority_baseline.get("accuracy")
            lines.append(
                f"| {r.cell} | {format_metric(accuracy)} | {format_metric(majority)} | "
                f"{format_metric(r.metrics.get('auc'))} | {_settings(r)} |"
            )
    if failed:
        lines += ["", "## Failed", ""]
        lines += [f"- {r.cell}: {(r.message or '').splitlines()[0]}" for r in failed]
    if best:
        lines += [
            "",
            f"Best: `{best[0].cell}` ({_settings(best[0])}; initial weights: {best[0].weights}).",
            f"Ship it: `python -m training export --run <this folder>/runs/{best[0].cell} --name <name>`.",
            "",
            f"Its figures ({BEST_DIR}/): "
            + ", ".join(f"[{name.removesuffix('.png')}]({BEST_DIR}/{name})" for name in BEST_FIGURES)
            + f"; its full report: [runs/{best[0].cell}/evaluation/report.md]"
            f"(runs/{best[0].cell}/evaluation/report.md).",
        ]
    lines += ["", f"![comparison]({COMPARISON_PNG})", "", f"![cost]({COST_PNG})", ""]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _count(value: int | None) -> str:
    return "" if value is None else f"{value / 1e6:.2f} M"


def _plot_comparison(spec: GridSpec, results: list[CellResult], path: Path) -> None:
    metric = spec.rank_by
    order = ranked(results, metric)
    rest = [r for r in results if r not in order]
    shown = order + rest
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(shown) + 1.5))
    for y, r in enumerate(shown):
        value = r.metrics.get(metric) or 0.0
        if r.status == "ok":
            interval = r.confidence_intervals.get(metric)
            xerr = None if interval is None else [[value - interval[0]], [interval[1] - value]]
            ax.barh(y, value, xerr=xerr, color="tab:blue", capsize=3)
        else:
            ax.barh(y, value, color="lightgrey", hatch="//", edgecolor="grey")
            ax.text(0.01, y, f"{r.status.upper()}: not ranked", va="center", fontsize=8)
    baseline = next((r.majority_baseline.get(metric) for r in results if r.majority_baseline), None)
    if baseline is not None:
        ax.axvline(baseline, color="red", linestyle="--", label=f"majority-class baseline ({baseline:.3f})")
        ax.legend(loc="lower right")
    ax.set_yticks(range(len(shown)), [r.cell for r in shown], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} ({shown[0].report_split if shown else ''} split, 95% CI)")
    ax.set_title(spec.name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_cost(spec: GridSpec, results: list[CellResult], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 5))
    for r in results:
        score = r.metrics.get(spec.rank_by)
        if r.train_seconds is None or score is None:
            continue
        ax.scatter(r.train_seconds, score, marker="o" if r.status == "ok" else "x")
        ax.annotate(r.cell, (r.train_seconds, score), fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("training time (s, log scale)")
    ax.set_ylabel(spec.rank_by)
    ax.set_title(f"{spec.name}: score vs cost (x = collapsed)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_grid_report(spec: GridSpec, results: list[CellResult], out_dir: Path, spec_path: str) -> None:
    """``spec_path``: the YAML as the command was given it, quoted in the report."""
    write_csv(spec, results, out_dir / "results.csv")
    (out_dir / "results.md").write_text(_markdown(spec, results, spec_path))
    _plot_comparison(spec, results, out_dir / COMPARISON_PNG)
    _plot_cost(spec, results, out_dir / COST_PNG)
    best = ranked(results, spec.rank_by)
    if best:
        _copy_best_figures(out_dir / "runs" / best[0].cell, out_dir / BEST_DIR)


def _copy_best_figures(run_dir: Path, target: Path) -> None:
    target.mkdir(exist_ok=True)
    for name in BEST_FIGURES:
        source = run_dir / name if name == "training_curves.png" else run_dir / "evaluation" / name
        if source.is_file():
            shutil.copy2(source, target / name)
