"""The layout term: the classifier folded onto the map is the classifier on the pooled grid, the term is
1 at its validation quantile, and the views it learns from are what they say."""

import numpy as np
import pytest
import torch

from training.ood.layout import (
    GRID,
    LayoutModel,
    descriptor,
    fit_layout,
    framed_copies,
    grid_pooling,
    wrong_views,
)


def _maps(count: int, shift: float, seed: int) -> torch.Tensor:
    """Mid-level maps [N, 4, 14, 14] (14 is not a multiple of the grid); ``shift`` brightens the top."""
    maps = torch.randn(count, 4, 14, 14, generator=torch.Generator().manual_seed(seed))
    maps[:, :, :5] += shift
    return maps


def _fitted() -> tuple[torch.Tensor, LayoutModel]:
    films, wrong, validation = _maps(60, 0.0, 0), _maps(60, 2.0, 1), _maps(40, 0.0, 2)
    layout = fit_layout(descriptor(films), descriptor(wrong), descriptor(validation), (4, 14, 14), 0.9)
    return validation, layout


def test_grid_pooling_is_adaptive_average_pooling() -> None:
    maps = _maps(3, 0.0, 5)
    pooled = (maps.flatten(2) @ grid_pooling(14, 14).T).reshape(3, 4, GRID, GRID)
    torch.testing.assert_close(pooled, torch.nn.functional.adaptive_avg_pool2d(maps, GRID))


def test_folded_term_equals_the_term_on_the_pooled_grid() -> None:
    validation, layout = _fitted()
    maps = torch.cat([validation, _maps(10, 2.0, 3)])
    torch.testing.assert_close(
        layout.term(maps), layout.term_of_descriptor(descriptor(maps)), rtol=1e-4, atol=0
    )


def test_term_is_one_at_the_validation_quantile_and_far_above_it_for_wrong_views() -> None:
    validation, layout = _fitted()
    assert float(torch.quantile(layout.term(validation).double(), 0.9)) == pytest.approx(1.0, rel=1e-3)
    assert bool((layout.term(_maps(20, 2.0, 4)) > 1.0).all())


def test_wrong_views_are_new_views_of_the_film_through_the_contract() -> None:
    rng = np.random.default_rng(0)
    film = np.random.default_rng(1).random((64, 48), dtype=np.float32)
    views = wrong_views(film, rng, 12)
    assert len(views) == 12
    for view in views:
        assert view.shape == film.shape and view.dtype == np.float32
        assert float(view.min()) >= 0.0 and float(view.max()) <= 1.0
        assert float(np.abs(view - film).mean()) > 0.01  # not the film itself


def test_framed_copies_keep_the_shape_and_change_the_pixels() -> None:
    films = np.random.default_rng(1).random((5, 32, 32), dtype=np.float32)
    copies = framed_copies(films, np.random.default_rng(2))
    assert [c.shape for c in copies] == [(32, 32)] * 5
    assert all(float(np.abs(c - f).mean()) > 0 for c, f in zip(copies, films, strict=True))
