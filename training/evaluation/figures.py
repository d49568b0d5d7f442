"""The report's figures drawn from the report itself: ROC curves, confusion matrices, reliability."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from training.evaluation.results import EvaluationReport


def _title(report: EvaluationReport) -> str:
    model = report.model.architecture or report.model.kind
    return f"{model} ({report.model.kind}), {report.split} split, {report.n} films"


def plot_roc(report: EvaluationReport, path: Path) -> None:
    """One-vs-rest curve per class (the positive class's alone for a binary model), with the chance
    line - which is also the majority baseline's curve: a constant score ranks nothing."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for curve in report.scores.roc:
        if curve.auc is None:
            continue
        ax.plot(
            curve.false_positive_rate,
            curve.true_positive_rate,
            label=f"{curve.class_name} vs rest (AUC {curve.auc:.3f})",
        )
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="chance = majority baseline (AUC 0.5)")
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"ROC\n{_title(report)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(report: EvaluationReport, path: Path) -> None:
    """Counts, and each row divided by its class's films (so each true class's recall is on the diagonal)."""
    counts = np.asarray(report.scores.confusion_matrix, dtype=np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    names = report.class_names
    size = 2.0 + 0.9 * len(names)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size))
    for ax, values, label, fmt in (
        (axes[0], counts, "counts", "{:.0f}"),
        (axes[1], normalised, "row-normalised", "{:.2f}"),
    ):
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=max(values.max(), 1e-12))
        peak = values.max()
        for (i, j), value in np.ndenumerate(values):
            colour = "white" if peak and value > peak / 2 else "black"
            ax.text(j, i, fmt.format(value), ha="center", va="center", color=colour, fontsize=9)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(label)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"Confusion matrix\n{_title(report)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reliability(report: EvaluationReport, path: Path) -> None:
    """Observed rate per equal-width bin against the diagonal; bar width = bin, shade = films in it."""
    panels = report.scores.reliability
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        filled = [b for b in panel.bins if b.count > 0 and b.observed is not None]
        most = max((b.count for b in filled), default=1)
        for b in filled:
            ax.bar(
                b.lower,
                b.observed,
                width=b.upper - b.lower,
                align="edge",
                color="tab:blue",
                alpha=0.25 + 0.65 * b.count / most,
                edgecolor="black",
                linewidth=0.5,
            )
        ax.plot(
            [b.mean_predicted for b in filled],
            [b.observed for b in filled],
            marker="o",
            color="tab:red",
            label="observed at mean predicted",
        )
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel(panel.quantity)
        ax.set_ylabel("observed accuracy" if panel.quantity == "top-class confidence" else "observed rate")
        ax.set_title(f"{panel.quantity}: ECE {panel.ece:.4f}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    top = panels[0].ece
    fig.suptitle(f"Reliability, ECE {top:.4f} ({len(panels[0].bins)} bins)\n{_title(report)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
