"""Random augmentation on a batch of contract tensors, drawn from one seeded generator.

Kept apart from the fixed preprocessing contract: the service never augments.
"""

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from service.contract.preprocess import stretch_contrast
from training.config import AugmentConfig
from training.data import shifts


class RandAffineIntensity:
    """Per-image small rotation, zoom (scale) and shift, then brightness/contrast jitter, clipped to
    [0, 1], then an optional horizontal flip. Each is off at magnitude 0 (flip: off by default)."""

    def __init__(self, config: AugmentConfig, seed: int) -> None:
        self.config = config
        self.generator = torch.Generator().manual_seed(seed)

    def _uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=self.generator)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if not self.config.enabled:
            return images
        c = self.config
        n = images.shape[0]
        angle = self._uniform(n, -c.rotation_degrees, c.rotation_degrees) * math.pi / 180
        scale = self._uniform(n, *c.scale)
        shift = self._uniform(2 * n, -c.shift_fraction, c.shift_fraction).reshape(n, 2) * 2
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack(
            [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
        )
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        brightness = self._uniform(n, -c.brightness, c.brightness).view(n, 1, 1, 1)
        contrast = self._uniform(n, 1 - c.contrast, 1 + c.contrast).view(n, 1, 1, 1)
        mean = warped.mean(dim=(1, 2, 3), keepdim=True)
        out = ((warped - mean) * contrast + mean + brightness).clamp(0.0, 1.0)
        if c.horizontal_flip:  # only when asked: a mirrored chest film shows dextrocardia
            flip = (torch.rand(n, generator=self.generator) < 0.5).view(n, 1, 1, 1)
            out = torch.where(flip, out.flip(-1), out)
        return out


# Shifts that keep the frontal layout: the OOD gate is fitted on copies with these only, so cropped
# and framed films (partial views) stay unlike its films.
LAYOUT_KEEPING = ("gamma", "gamma-down", "contrast-low", "blur", "sharpen", "noise", "jpeg", "down-up")
# The acquisition shifts augmentation draws from: name -> (parameter at identity, largest parameter).
# Ranges reach the benchmark's severity 2-3, so training sees what the benchmark measures.
ACQUISITION_RANGES: dict[str, tuple[float, float]] = {
    "gamma": (1.0, 2.2),
    "gamma-down": (1.0, 0.45),
    "contrast-low": (1.0, 0.5),
    "blur": (0.0, 1.6),
    "sharpen": (0.0, 1.5),
    "noise": (0.0, 0.06),
    "jpeg": (95.0, 15.0),
    "down-up": (1.0, 3.5),
    "zoom-crop": (0.0, 0.1),
    "border": (0.0, 0.1),
}


_ACQUIRE: dict[str, Callable[[shifts.Plane, float, int], shifts.Plane]] = {
    "gamma": lambda p, v, _: shifts.gamma(p, v),
    "gamma-down": lambda p, v, _: shifts.gamma(p, v),
    "contrast-low": lambda p, v, _: shifts.contrast(p, v),
    "blur": lambda p, v, _: shifts.blur(p, v),
    "sharpen": lambda p, v, _: shifts.sharpen(p, v),
    "noise": shifts.noise,
    "jpeg": lambda p, v, _: shifts.jpeg(p, round(v)),
    "down-up": lambda p, v, _: shifts.down_up(p, v),
    "zoom-crop": lambda p, v, _: shifts.zoom_crop(p, v),
    "border": lambda p, v, _: shifts.border(p, v),
}


def _acquire(plane: shifts.Plane, name: str, t: float, seed: int) -> shifts.Plane:
    """One acquisition shift at strength ``t`` in [0, 1] of its range (0 = identity)."""
    start, end = ACQUISITION_RANGES[name]
    return _ACQUIRE[name](plane, start + t * (end - start), seed)


class RandAcquisition:
    """Per film, with probability ``config.acquisition``: ``config.acquisition_ops`` acquisition shifts
    drawn from ``ACQUISITION_RANGES`` at random strength; with probability ``config.annotations``:
    burned-in annotations. Then the contract's percentile stretch again, as the service would apply
    it to such a film. The shifts are ``training.data.shifts``' functions, the ones the benchmark grades."""

    def __init__(self, config: AugmentConfig, seed: int, shifts: Sequence[str] | None = None) -> None:
        self.config = config
        self.rng = np.random.default_rng(seed)
        self.shifts = list(shifts or ACQUISITION_RANGES)

    def _film(self, plane: shifts.Plane) -> shifts.Plane:
        c = self.config
        out = plane
        touched = False
        if self.rng.random() < c.acquisition:
            names = self.rng.choice(self.shifts, size=min(c.acquisition_ops, len(self.shifts)), replace=False)
            for name in names:
                out = _acquire(out, str(name), float(self.rng.random()), int(self.rng.integers(1 << 31)))
            touched = True
        if self.rng.random() < c.annotations:
            out = shifts.annotate(out, int(self.rng.integers(1 << 31)))
            touched = True
        return stretch_contrast(out) if touched else out

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        c = self.config
        if not c.enabled or (c.acquisition <= 0 and c.annotations <= 0):
            return images
        films = images.numpy()
        out = np.stack([self._film(film[0])[np.newaxis] for film in films])
        return torch.from_numpy(out.astype(np.float32))
