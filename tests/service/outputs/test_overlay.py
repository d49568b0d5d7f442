"""The Grad-CAM overlay drawing: size, colours, geometry, and degenerate maps."""

import io

import numpy as np
import pytest
from PIL import Image

from service.outputs.overlay import jet, normalise_cam, overlay_size, render_overlay
from tests.factories import chest_like


@pytest.mark.parametrize(
    ("shape", "max_side", "expected"),
    [
        ((96, 80), 512, (96, 80)),
        ((2000, 1000), 512, (512, 256)),
        ((1000, 3000), 300, (100, 300)),
        ((5, 5000), 64, (1, 64)),
    ],
)
def test_overlay_size_fits_and_keeps_aspect(
    shape: tuple[int, int], max_side: int, expected: tuple[int, int]
) -> None:
    assert overlay_size(*shape, max_side) == expected


def test_jet_runs_blue_to_red() -> None:
    ends = jet(np.array([0.0, 0.5, 1.0], dtype=np.float32))
    assert np.argmax(ends[0]) == 2 and np.argmax(ends[2]) == 0  # low = blue, high = red
    assert ends[1, 1] == pytest.approx(1.0)  # middle = green
    assert ends.min() >= 0.0 and ends.max() <= 1.0


def test_degenerate_maps_normalise_to_zero() -> None:
    assert not normalise_cam(np.zeros((7, 7), dtype=np.float32)).any()
    weird = np.array([[np.nan, np.inf], [-1.0, 0.0]], dtype=np.float32)
    assert not normalise_cam(weird).any()
    assert normalise_cam(np.array([[0.0, 2.0]], dtype=np.float32)).tolist() == [[0.0, 1.0]]


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png), formats=["PNG"]).convert("RGB"), dtype=np.int16)


def test_hot_cell_lands_on_the_matching_region() -> None:
    """A CAM hot in its top-right cell must redden the top-right of the film, whatever the aspect."""
    film = chest_like(300, 200, seed=2).astype(np.float32)
    cam = np.zeros((7, 7), dtype=np.float32)
    cam[0, 6] = 5.0
    png, width, height = render_overlay(film, cam, max_side=150)
    assert (width, height) == (100, 150)
    rgb = _decode(png)
    assert rgb.shape == (150, 100, 3)
    redness = rgb[..., 0] - rgb[..., 2]
    assert redness[:20, -15:].mean() > 50  # top-right: hot
    cold = rgb[-20:, :15]  # bottom-left: no evidence, so the film shows through untouched (grey)
    assert np.array_equal(cold[..., 0], cold[..., 1])
    assert np.array_equal(cold[..., 1], cold[..., 2])


def test_constant_film_and_empty_cam_still_render() -> None:
    png, width, height = render_overlay(
        np.zeros((64, 48), dtype=np.float32), np.zeros((7, 7), np.float32), 512
    )
    assert (width, height) == (48, 64)
    assert _decode(png).shape == (64, 48, 3)
