import torch

from training.config import AugmentConfig
from training.data.augment import RandAffineIntensity


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


def _only(**fields: object) -> AugmentConfig:
    """Every named transform at magnitude zero except the ones given."""
    neutral: dict[str, object] = {
        "rotation_degrees": 0.0,
        "scale": (1.0, 1.0),
        "shift_fraction": 0.0,
        "brightness": 0.0,
        "contrast": 0.0,
    }
    return AugmentConfig.model_validate({**neutral, **fields})


def test_flip_is_off_by_default_and_mirrors_only_when_asked() -> None:
    assert not AugmentConfig().horizontal_flip
    images = torch.rand(16, 1, 8, 8)
    unchanged = RandAffineIntensity(_only(), seed=0)(images)
    assert torch.allclose(unchanged, images, atol=1e-5)  # identity warp with every magnitude at zero
    flipped = RandAffineIntensity(_only(horizontal_flip=True), seed=0)(images)
    mirrored = [torch.allclose(f, i.flip(-1), atol=1e-5) for f, i in zip(flipped, images, strict=True)]
    same = [torch.allclose(f, i, atol=1e-5) for f, i in zip(flipped, images, strict=True)]
    assert all(m or s for m, s in zip(mirrored, same, strict=True))
    assert any(mirrored) and any(same)


def test_each_named_transform_acts_alone() -> None:
    images = torch.rand(4, 1, 16, 16)
    for fields in (
        {"rotation_degrees": 20.0},
        {"scale": (0.8, 1.2)},
        {"shift_fraction": 0.2},
        {"brightness": 0.3},
    ):
        out = RandAffineIntensity(_only(**fields), seed=1)(images)
        assert not torch.allclose(out, images, atol=1e-3), fields
