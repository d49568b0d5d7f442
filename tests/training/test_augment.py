import torch

from training.augment import RandAffineIntensity
from training.config import AugmentConfig


def test_augmentation_stays_in_contract_range_and_is_seeded() -> None:
    images = torch.rand(4, 1, 32, 32)
    first = RandAffineIntensity(AugmentConfig(), seed=3)(images)
    second = RandAffineIntensity(AugmentConfig(), seed=3)(images)
    assert first.shape == images.shape
    assert torch.equal(first, second)
    assert float(first.min()) >= 0.0
    assert float(first.max()) <= 1.0
    assert not torch.equal(first, images)
    # Each image gets its own transform: identical inputs come out different.
    same = RandAffineIntensity(AugmentConfig(), seed=3)(images[:1].repeat(2, 1, 1, 1))
    assert not torch.equal(same[0], same[1])


def test_disabled_augmentation_is_identity() -> None:
    images = torch.rand(2, 1, 16, 16)
    assert torch.equal(RandAffineIntensity(AugmentConfig(enabled=False), seed=0)(images), images)
