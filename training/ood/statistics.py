"""Out-of-distribution score, computed inside the exported graph (output ``ood_score``).

Three Gaussian models, each "Mahalanobis distance to the nearest class mean under one shared (tied)
Ledoit-Wolf covariance", fitted on the training split:

* on the pooled last-conv features (what the classifier sees): catches content unlike any film;
* on the pooled mid-level features (the backbone's tap): catches textures and photographs whose
  high-level features happen to land near a film's;
* on a 16 x 16 thumbnail of the model input: catches layout - a rotated, flipped or cropped film has
  chest-like texture, which the pooled features are largely invariant to, but not a frontal layout.

Each distance is divided by its own validation quantile, the score is the largest of the three, and
the threshold is a quantile of that score on validation films, so a known share of real films is
refused.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.covariance import LedoitWolf

from training.backbones.factory import Classifier

VALIDATION_QUANTILE = 0.995  # reject ~0.5 % of real validation films, under the 1 % budget
THUMBNAIL_SIDE = 16
METHOD = (
    "max of three Mahalanobis distances (nearest class mean, tied Ledoit-Wolf covariance, each scaled by "
    f"its validation {VALIDATION_QUANTILE} quantile): pooled last-conv features, pooled mid-level "
    f"features, and the {THUMBNAIL_SIDE}x{THUMBNAIL_SIDE} input thumbnail"
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


def thumbnail(image: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(image, THUMBNAIL_SIDE).flatten(1)


def ood_score(
    image: torch.Tensor, mid: torch.Tensor, fmap: torch.Tensor, stats: OodStatistics
) -> torch.Tensor:
    """[N]: the largest of the three scaled distances."""
    content = stats.features.distance(fmap.mean(dim=(2, 3)))
    texture = stats.mid_features.distance(mid.mean(dim=(2, 3)))
    layout = stats.thumbnail.distance(thumbnail(image))
    return torch.maximum(torch.maximum(content, texture), layout)


@torch.no_grad()
def _descriptors(model: Classifier, inputs: torch.Tensor, batch_size: int = 64) -> list[torch.Tensor]:
    """[pooled last-conv features, pooled mid-level features, thumbnails], one row per film."""
    model.eval()
    rows: list[list[torch.Tensor]] = [[], [], []]
    for i in range(0, len(inputs), batch_size):
        batch = inputs[i : i + batch_size]
        mid, fmap = model.forward_features_with_tap(batch)
        for row, value in zip(
            rows, (fmap.mean(dim=(2, 3)), mid.mean(dim=(2, 3)), thumbnail(batch)), strict=True
        ):
            row.append(value)
    return [torch.cat(row) for row in rows]


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


def fit_ood_statistics(
    model: Classifier,
    train_inputs: torch.Tensor,
    train_labels: torch.Tensor,
    val_inputs: torch.Tensor,
    num_classes: int,
) -> tuple[OodStatistics, torch.Tensor]:
    """Gaussians from training films, scales from validation films; returns the validation scores too."""
    train, val = _descriptors(model, train_inputs), _descriptors(model, val_inputs)
    gaussians = [_gaussian(t, train_labels, num_classes, v) for t, v in zip(train, val, strict=True)]
    stats = OodStatistics(features=gaussians[0], mid_features=gaussians[1], thumbnail=gaussians[2])
    distances = torch.stack([g.distance(v) for g, v in zip(gaussians, val, strict=True)])
    return stats, distances.max(dim=0).values


def validation_threshold(scores: torch.Tensor) -> float:
    return float(torch.quantile(scores.double(), VALIDATION_QUANTILE))
