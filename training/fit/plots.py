"""Training-curve figure, written after every epoch so a long run can be watched."""

import itertools
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_training_curves(history: list[dict[str, Any]], path: Path) -> None:
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(11, 4))
    loss_ax.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train loss")
    loss_ax.plot(epochs, [row["val_cross_entropy"] for row in history], marker="o", label="val cross-entropy")
    for key, label in (
        ("val_auc", "val AUC"),
        ("val_accuracy", "val accuracy"),
        ("val_balanced_accuracy", "val balanced accuracy"),
    ):
        metric_ax.plot(epochs, [row[key] for row in history], marker="o", label=label)
    metric_ax.axhline(
        history[-1]["baseline_accuracy"], color="grey", linestyle="--", label="majority-class accuracy"
    )
    phase_starts = [
        row["epoch"] for prev, row in itertools.pairwise(history) if row["phase"] != prev["phase"]
    ]
    for ax in (loss_ax, metric_ax):
        for start in phase_starts:
            ax.axvline(start - 0.5, color="black", alpha=0.3)
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    loss_ax.set_title("loss")
    metric_ax.set_title("validation (phase boundary = vertical line)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
