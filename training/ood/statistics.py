"""Out-of-distribution score, computed inside the exported graph (output ``ood_score``).

Three Gaussian models, each "Mahalanobis distance to the nearest class mean under one shared (tied)
Ledoit-Wolf covariance", fitted on the training split, and a layout check (``training.ood.layout``):

* on the pooled last-conv features (what the classifier sees): catches content unlike any film;
* on the pooled mid-level features (the backbone's tap): catches textures and photographs whose
  high-level features happen to land near a film's;
* on a 16 x 16 thumbnail of the model input: catches gross layout - a film on its side;
* a linear classifier on the mid-level map pooled to 3 x 3, trained against wrong views of training
  films (bands, patches, turns): catches parts of films and films upside down, which the Gaussians
  pass.

Each term is divided by (or offset to) its own validation quantile, the score is the largest, and
the threshold is a quantile of that score on validation films, so a known share of real films is
refused.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.covariance import LedoitWolf

from training.backbones.factory import Classifier
from training.ood.layout import (
    GRID,
    NEGATIVE_VIEWS_PER_FILM,
    LayoutModel,
    fit_layout,
    framed_copies,
    wrong_views,
)
from training.ood.layout import descriptor as layout_descriptor

VALIDATION_QUANTILE = 0.995  # reject ~0.5 % of real validation films, under the 1 % budget
THUMBNAIL_SIDE = 16
LAYOUT_FILMS = 1000  # training films whose framed copies and wrong views the gate learns from
METHOD = (
    "max of four terms, each scaled to 1 at its validation "
    f"{VALIDATION_QUANTILE} quantile: three Mahalanobis distances (nearest class mean, tied Ledoit-Wolf "
    "covariance) on pooled last-conv features, pooled mid-level features and the "
    f"{THUMBNAIL_SIDE}x{THUMBNAIL_SIDE} input thumbnail, and exp(logit) of a layout check (logistic "
    f"regression on the mid-level map pooled to {GRID}x{GRID}, trained against bands, patches and turns "
    "of training films)"
)


@dataclass(frozen=True)
class GaussianModel:
    class_means: torch.Tensor  # [C, K]
    precision: torch.Tensor  # [K, K]
    scale: float  # the distance's validation quantile: makes the three distances comparable

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """[N, K] -> [N]: squared distance to the nearest class mean / scale. Plain ops: exports to ONNX."""
        diff = x.unsqueeze(1) - self.class_means.unsqueeze(0)  # [N, C, K]
        return (torch.matmul(diff, self.precision) * diff).sum(dim=-1).min(dim=1).values / self.scale


@dataclass(frozen=True)
class OodStatistics:
    features: GaussianModel
    mid_features: GaussianModel
    thumbnail: GaussianModel
    layout: LayoutModel


def thumbnail(image: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(image, THUMBNAIL_SIDE).flatten(1)


def ood_score(
    image: torch.Tensor, mid: torch.Tensor, fmap: torch.Tensor, stats: OodStatistics
) -> torch.Tensor:
    """[N]: the largest of the four scaled terms."""
    content = stats.features.distance(fmap.mean(dim=(2, 3)))
    texture = stats.mid_features.distance(mid.mean(dim=(2, 3)))
    thumb = stats.thumbnail.distance(thumbnail(image))
    layout = stats.layout.term(mid)
    return torch.maximum(torch.maximum(torch.maximum(content, texture), thumb), layout)


@torch.no_grad()
def _descriptors(model: Classifier, inputs: torch.Tensor, batch_size: int = 64) -> list[torch.Tensor]:
    """[pooled last-conv features, pooled mid-level features, thumbnails, layout descriptors], one row
    per film."""
    model.eval()
    rows: list[list[torch.Tensor]] = [[], [], [], []]
    for i in range(0, len(inputs), batch_size):
        batch = inputs[i : i + batch_size]
        mid, fmap = model.forward_features_with_tap(batch)
        values = (fmap.mean(dim=(2, 3)), mid.mean(dim=(2, 3)), thumbnail(batch), layout_descriptor(mid))
        for row, value in zip(rows, values, strict=True):
            row.append(value)
    return [torch.cat(row) for row in rows]


def _tensor(planes: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(planes)[:, np.newaxis])


def _gaussian(x: torch.Tensor, labels: torch.Tensor, num_classes: int, val_x: torch.Tensor) -> GaussianModel:
    data, y = x.double().numpy(), labels.numpy()
    means = np.stack([data[y == c].mean(axis=0) for c in range(num_classes)])
    # Ledoit-Wolf shrinkage: 1,280 features from a few thousand films make the raw covariance ill-conditioned.
    covariance = LedoitWolf(assume_centered=True).fit(data - means[y]).covariance_
    unscaled = GaussianModel(
        torch.from_numpy(means).float(), torch.from_numpy(np.linalg.inv(covariance)).float(), scale=1.0
    )
    scale = float(torch.quantile(unscaled.distance(val_x).double(), VALIDATION_QUANTILE))
    return GaussianModel(unscaled.class_means, unscaled.precision, scale)


@torch.no_grad()
def fit_ood_statistics(
    model: Classifier,
    train_inputs: torch.Tensor,
    train_labels: torch.Tensor,
    val_inputs: torch.Tensor,
    num_classes: int,
) -> tuple[OodStatistics, torch.Tensor]:
    """Gaussians and the layout check from training films, scales from validation films; returns the
    validation scores too. Framed copies of ``LAYOUT_FILMS`` training films (zoomed, bordered, tilted)
    join the Gaussians' films, and wrong views of the same films teach the layout check."""
    rng = np.random.default_rng(0)
    chosen = torch.from_numpy(rng.permutation(len(train_inputs))[:LAYOUT_FILMS])  # the split is by source
    planes = train_inputs[chosen, 0].numpy()
    framed = _descriptors(model, _tensor(framed_copies(planes, rng)))
    wrong = _descriptors(
        model, _tensor([v for p in planes for v in wrong_views(p, rng, NEGATIVE_VIEWS_PER_FILM)])
    )
    val_chosen = rng.permutation(len(val_inputs))[: len(val_inputs) // 2 + 1]
    val_framed = _descriptors(model, _tensor(framed_copies(val_inputs[val_chosen, 0].numpy(), rng)))
    train = [torch.cat(pair) for pair in zip(_descriptors(model, train_inputs), framed, strict=True)]
    labels = torch.cat([train_labels, train_labels[chosen]])
    val = _descriptors(model, val_inputs)
    gaussians = [_gaussian(t, labels, num_classes, v) for t, v in zip(train[:3], val[:3], strict=True)]
    map_shape = model.forward_features_with_tap(train_inputs[:1])[0].shape[1:]
    layout = fit_layout(
        train[3],
        wrong[3],
        torch.cat([val[3], val_framed[3]]),
        (map_shape[0], map_shape[1], map_shape[2]),
        VALIDATION_QUANTILE,
    )
    stats = OodStatistics(
        features=gaussians[0], mid_features=gaussians[1], thumbnail=gaussians[2], layout=layout
    )
    terms = [g.distance(v) for g, v in zip(gaussians, val[:3], strict=True)] + [
        layout.term_of_descriptor(val[3])
    ]
    return stats, torch.stack(terms).max(dim=0).values


def validation_threshold(scores: torch.Tensor) -> float:
    return float(torch.quantile(scores.double(), VALIDATION_QUANTILE))
