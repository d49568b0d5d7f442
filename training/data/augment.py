"""Random augmentation on a batch of contract tensors, drawn from one seeded generator.

Kept apart from the fixed preprocessing contract: the service never augments.
"""

import math

import torch
import torch.nn.functional as F

from training.config import AugmentConfig


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
