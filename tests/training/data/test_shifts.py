"""Acquisition shifts and annotations (``training.data.shifts``): severity 0 is the identity, every shift
really changes the pixels, and the augmentation that draws them stays in the contract's range."""

import numpy as np
import pytest
import torch

from tests.factories import chest_like
from training.config import AugmentConfig
from training.data import shifts
from training.data.augment import ACQUISITION_RANGES, RandAcquisition


def _film() -> shifts.Plane:
    return chest_like(96, 80, seed=3).astype(np.float32)


@pytest.mark.parametrize("name", sorted(shifts.SHIFTS))
def test_severity_zero_is_identity(name: str) -> None:
    film = _film()
    out = shifts.SHIFTS[name].at(0)(film)
    assert np.array_equal(out, film)
    assert out is not film


@pytest.mark.parametrize("name", sorted(shifts.SHIFTS))
@pytest.mark.parametrize("severity", [1, 2, 3])
def test_every_shift_changes_pixels_and_keeps_shape_and_range(name: str, severity: int) -> None:
    film = _film()
    out = shifts.SHIFTS[name].at(severity)(film)
    assert out.shape == film.shape
    assert out.dtype == np.float32
    assert float(out.min()) >= 0.0
    assert float(out.max()) <= 1.0
    assert float(np.abs(out - film).mean()) > 1e-3, f"{name} at severity {severity} left the film as it was"


@pytest.mark.parametrize("name", ["gamma-up", "blur", "noise", "jpeg", "down-up", "rotate", "burned-text"])
def test_severity_grades_the_change(name: str) -> None:
    film = _film()
    change = [float(np.abs(shifts.SHIFTS[name].at(s)(film) - film).mean()) for s in (1, 3)]
    assert change[1] > change[0]


def test_inversion_reverses_polarity() -> None:
    film = _film()
    assert np.allclose(shifts.invert(film), 1.0 - film)


@pytest.mark.parametrize("name", sorted(shifts.ANNOTATIONS))
def test_annotations_draw_bright_marks_and_leave_the_rest(name: str) -> None:
    film = _film() * 0.5  # darker, so a bright annotation is visible
    out = shifts.ANNOTATIONS[name](film, 2, 5)
    changed = np.abs(out - film) > 1e-6
    assert 0.001 < float(changed.mean()) < 0.5
    assert float(out[changed].max()) > 0.75


def test_annotate_is_seeded() -> None:
    film = _film()
    assert np.array_equal(shifts.annotate(film, 4), shifts.annotate(film, 4))
    assert not np.array_equal(shifts.annotate(film, 4), shifts.annotate(film, 5))


def test_rand_acquisition_is_off_by_default_and_seeded_when_on() -> None:
    images = torch.from_numpy(np.stack([_film()[None], chest_like(96, 80, seed=4).astype(np.float32)[None]]))
    assert torch.equal(RandAcquisition(AugmentConfig(), seed=0)(images), images)
    config = AugmentConfig(acquisition=1.0, acquisition_ops=3, annotations=1.0)
    first, second = RandAcquisition(config, seed=1)(images), RandAcquisition(config, seed=1)(images)
    assert torch.equal(first, second)
    assert not torch.equal(first, images)
    assert first.shape == images.shape
    assert float(first.min()) >= 0.0
    assert float(first.max()) <= 1.0


@pytest.mark.parametrize("name", sorted(ACQUISITION_RANGES))
def test_each_augmentation_shift_is_identity_at_zero_strength(name: str) -> None:
    from training.data.augment import _acquire

    film = _film()
    # zero strength = the range's start: the identity up to JPEG's own loss at quality 95
    tolerance = 0.05 if name == "jpeg" else 1e-6
    assert float(np.abs(_acquire(film, name, 0.0, 0) - film).max()) <= tolerance
    assert float(np.abs(_acquire(film, name, 1.0, 0) - film).mean()) > 1e-3
