"""The layout term of the OOD score: is this a whole frontal chest film, or part of one, or one turned?

The Gaussian terms (``training.ood.statistics``) model what films look like and cannot say what they
do not look like: halves and thirds of films and films turned upside down have film texture and film
statistics, and a third of them passed the gate (35/50 refused, measured 2026-12-06). Here a linear
classifier learns the difference, from the mid-level map pooled to a 3 x 3 grid (where things are,
which the pooled features forget):

* positives: training films, and copies framed the way real films are framed (zoomed in by up to 20 %
  per side, inside a dark border of up to 25 %, tilted by up to 20 degrees);
* negatives: views of training films that are not a frontal film, drawn at random: a band of 20-55 %
  of the film along one axis, a patch of 25-50 % along both, a quarter, half or three-quarter turn.

The OOD report scores fixed views of *validation* films (halves, thirds, a quarter turn, upside
down), which lie inside that family: it shows the check generalises to new films, not to new kinds of
wrong view. In the graph the pooling and the classifier fold into one linear map on the mid-level map,
and the term is ``exp(logit - q)``, ``q`` the logit's validation quantile, so, like the Gaussian
distances, it is 1 at that quantile.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

from service.contract.preprocess import resize_plane, stretch_contrast
from training.data.shifts import Plane, border, rotate, zoom_crop

GRID = 3
# Real films are framed these ways and must pass, up to: (function, largest amount). Past the shift
# benchmark's severity 3 (zoom 12 %, border 14 %, 14 degrees): shutters masked black, small patients
# on large detectors, tight collimation. Both gates before this refused every film with a 20 % border.
FRAMING: dict[str, tuple[Callable[[Plane, float], Plane], float]] = {
    "zoom-crop": (zoom_crop, 0.2),
    "border": (border, 0.25),
    "rotate": (rotate, 20.0),
}
# Wrong views, kept apart from the framing above: a centred patch of 60 % is a 20 % zoom.
BAND = (0.2, 0.55)  # share of the film kept along one axis
PATCH = (0.25, 0.5)  # share kept along both
NEGATIVE_VIEWS_PER_FILM = 3
REGULARISATION = 0.01  # sklearn's C; every value tried from 0.01 to 0.1 separated the views (2026-12-06)
# exp(10) = 22,026: far past any threshold, and inside float16 (65,504), so a half-precision graph
# gives a refused image a finite score, not inf (which the service treats as a broken model).
_MAX_EXPONENT = 10.0


@dataclass(frozen=True)
class LayoutModel:
    weights: torch.Tensor  # [C * h * w]: the classifier on the 3 x 3 pooled map, folded onto the map
    grid_weights: torch.Tensor  # [C * GRID * GRID]: the same classifier on ``descriptor`` (fitting only)
    bias: float  # includes the validation quantile, so the logit is 0 there

    def term(self, mid: torch.Tensor) -> torch.Tensor:
        """[N, C, h, w] -> [N]: exp(logit - validation quantile). Plain ops: exports to ONNX."""
        return _exp(mid.flatten(1) @ self.weights + self.bias)

    def term_of_descriptor(self, descriptors: torch.Tensor) -> torch.Tensor:
        """The same term from ``descriptor(mid)`` rows."""
        return _exp(descriptors.double() @ self.grid_weights.double() + self.bias).float()


def _exp(logit: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.clamp(logit, max=_MAX_EXPONENT))


def grid_pooling(height: int, width: int) -> torch.Tensor:
    """[GRID * GRID, height * width]: adaptive average pooling to the grid, as a matrix."""
    basis = torch.eye(height * width).reshape(height * width, 1, height, width)
    return F.adaptive_avg_pool2d(basis, GRID).reshape(height * width, GRID * GRID).T


def wrong_views(plane: Plane, rng: np.random.Generator, count: int) -> list[Plane]:
    """``count`` random views of a film that are not a frontal film, each through the contract's resize
    and contrast stretch, as an upload of that view would arrive."""
    height, width = plane.shape
    views = []
    for _ in range(count):
        kind = rng.integers(3)
        if kind == 2:
            view = np.rot90(plane, int(rng.integers(1, 4)))
        else:
            keep = rng.uniform(*BAND, 2) if kind == 0 else rng.uniform(*PATCH, 2)
            if kind == 0:
                keep[rng.integers(2)] = 1.0  # a band: whole along one axis
            rows, cols = max(1, round(keep[0] * height)), max(1, round(keep[1] * width))
            top, left = rng.integers(height - rows + 1), rng.integers(width - cols + 1)
            view = plane[top : top + rows, left : left + cols]
        views.append(_as_upload(view, height, width))
    return views


def framed_copies(planes: Plane, rng: np.random.Generator) -> list[Plane]:
    """One copy of each film zoomed, bordered or tilted by a random amount up to ``FRAMING``'s."""
    height, width = planes.shape[-2:]
    copies = []
    for plane in planes:
        frame, largest = list(FRAMING.values())[rng.integers(len(FRAMING))]
        amount = float(rng.uniform(0.0, largest)) * (
            1.0 if frame is not rotate else float(rng.choice([-1, 1]))
        )
        copies.append(_as_upload(frame(plane, amount), height, width))
    return copies


def _as_upload(view: npt.NDArray[np.floating], height: int, width: int) -> Plane:
    return stretch_contrast(resize_plane(np.ascontiguousarray(view, dtype=np.float32), height, width))


def descriptor(mid: torch.Tensor) -> torch.Tensor:
    """[N, C, h, w] -> [N, C * GRID * GRID]: the mid-level map pooled to the grid (fitting only)."""
    return F.adaptive_avg_pool2d(mid, GRID).flatten(1)


def fit_layout(
    films: torch.Tensor,
    wrong: torch.Tensor,
    validation: torch.Tensor,
    map_shape: tuple[int, int, int],
    quantile: float,
) -> LayoutModel:
    """Descriptors of films (train), of wrong views (train), and of films to set the quantile on
    (validation), and the mid-level map's [C, h, w] -> the layout term."""
    channels, height, width = map_shape
    x = torch.cat([films, wrong]).double().numpy()
    y = np.r_[np.zeros(len(films)), np.ones(len(wrong))]
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    classifier = LogisticRegression(C=REGULARISATION, max_iter=2000).fit((x - mean) / std, y)
    coef = classifier.coef_[0] / std  # on the unstandardised descriptor
    intercept = float(classifier.intercept_[0] - coef @ mean)
    offset = float(np.quantile(validation.double().numpy() @ coef + intercept, quantile))
    # Fold the pooling in: logit = sum_{c,g} coef[c,g] sum_p P[g,p] map[c,p] = map . (coef @ P).
    folded = torch.from_numpy(coef.reshape(channels, GRID * GRID)) @ grid_pooling(height, width).double()
    return LayoutModel(
        weights=folded.flatten().float(), grid_weights=torch.from_numpy(coef), bias=intercept - offset
    )
