"""The Grad-CAM gallery: the most confident right and wrong calls, each with the map of the class
it was called as, coloured and blended exactly as the service's overlay does it."""

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from service.outputs.overlay import overlay_background, overlay_pixels
from training.evaluation.results import GalleryCase, GalleryFilms
from training.stats.metrics import FloatArray, IntArray

PER_KIND = 4


def choose_gallery(
    labels: IntArray,
    predicted: IntArray,
    probabilities: FloatArray,
    class_names: Sequence[str],
    per_kind: int = PER_KIND,
) -> list[GalleryCase]:
    """Up to ``per_kind`` correct then up to ``per_kind`` wrong films, each kind most confident first
    (ties by position in the split): deterministic, and the confident mistakes are the ones to see."""
    confidence = probabilities[np.arange(len(predicted)), predicted]
    cases: list[GalleryCase] = []
    for correct in (True, False):
        members = np.flatnonzero((predicted == labels) == correct)
        ordered = members[np.lexsort((members, -confidence[members]))][:per_kind]
        cases.extend(
            GalleryCase(
                index=int(i),
                true_class=class_names[labels[i]],
                predicted_class=class_names[predicted[i]],
                confidence=float(confidence[i]),
                correct=correct,
            )
            for i in ordered
        )
    return cases


def gallery_films(
    films: FloatArray | np.ndarray, cams: np.ndarray, predicted: IntArray, cases: Sequence[GalleryCase]
) -> GalleryFilms:
    """The chosen films ``[k, H, W]`` and the raw map of each one's predicted class ``[k, h, w]``."""
    idx = np.asarray([case.index for case in cases], dtype=np.int64)
    height, width = films.shape[-2:]
    cam_height, cam_width = cams.shape[-2:]
    if len(idx) == 0:
        empty = np.zeros((0, height, width), dtype=np.float32)
        return GalleryFilms(empty, np.zeros((0, cam_height, cam_width), dtype=np.float32))
    return GalleryFilms(
        films=np.asarray(films[idx, 0], dtype=np.float32),
        cams=np.asarray(cams[idx, predicted[idx]], dtype=np.float32),
    )


def _overlay_rgb(film: np.ndarray, cam: np.ndarray) -> np.ndarray:
    background = overlay_background(film, max(film.shape))
    return overlay_pixels(background, cam)


def plot_gallery(cases: Sequence[GalleryCase], films: GalleryFilms, path: Path) -> None:
    """Row 1: correct calls, row 2: wrong calls; each panel says true class, call and confidence."""
    rows = {
        True: [i for i, c in enumerate(cases) if c.correct],
        False: [i for i, c in enumerate(cases) if not c.correct],
    }
    columns = max(1, *(len(members) for members in rows.values()))
    fig, axes = plt.subplots(2, columns, figsize=(2.6 * columns, 6.6), squeeze=False, layout="constrained")
    for row, correct in enumerate((True, False)):
        kind = "correct" if correct else "wrong"
        for column in range(columns):
            ax = axes[row][column]
            ax.axis("off")
            if column >= len(rows[correct]):
                if column == 0:
                    ax.text(0.5, 0.5, f"no {kind} calls", ha="center", va="center", transform=ax.transAxes)
                continue
            k = rows[correct][column]
            case = cases[k]
            ax.imshow(_overlay_rgb(films.films[k], films.cams[k]))
            colour = "darkgreen" if correct else "firebrick"
            ax.set_title(
                f"#{case.index} {kind}\ntrue {case.true_class}\ncalled {case.predicted_class} "
                f"(p={case.confidence:.2f})",
                fontsize=8,
                color=colour,
            )
    fig.suptitle("Grad-CAM of the predicted class (most confident first)")
    fig.savefig(path, dpi=100)
    plt.close(fig)
