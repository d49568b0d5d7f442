"""The Grad-CAM overlay drawing: size, colours, geometry, and degenerate maps."""

import io

import numpy as np
import pytest
from PIL import Image

from bench.stages import plain_overlay_pixels
from service.contract import decode_image
from service.contract.preprocess import load_model_input
from service.outputs.overlay import (
    blend_overlay,
    film_png,
    jet,
    normalise_cam,
    overlay_background,
    overlay_pixels,
    overlay_size,
    render_overlay,
)
from tests.factories import KERMANY_TRAIN, chest_like, png_bytes


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


def _films() -> list[np.ndarray]:
    """Real Kermany films where the shared data is present, synthetic ones always."""
    films = [chest_like(300, 200, seed=s).astype(np.float32) for s in range(3)]
    films.append(chest_like(700, 900, seed=9).astype(np.float32))  # shrunk to the overlay size
    if KERMANY_TRAIN.is_dir():
        for path in sorted(KERMANY_TRAIN.rglob("*.jpeg"))[::600][:8]:
            films.append(decode_image(path.read_bytes()).pixels)
    return films


def test_overlay_pixels_equal_the_plain_formula_on_films() -> None:
    """No behaviour change from the faster overlay: the same PNG pixels for every film and map."""
    rng = np.random.default_rng(0)
    for i, film in enumerate(_films()):
        background = overlay_background(film, 512)
        cams = [
            rng.random((7, 7), dtype=np.float32) * 3.0,
            np.zeros((4, 4), dtype=np.float32),  # no evidence: the plain film
            np.pad(np.ones((1, 1), dtype=np.float32), ((2, 3), (4, 1))),  # one hot cell
            np.array([[np.nan, -1.0], [np.inf, 2.0]], dtype=np.float32),  # cleaned, not an error
        ]
        for cam in cams:
            png = blend_overlay(background, cam)
            assert np.array_equal(_decode(png), plain_overlay_pixels(background, cam)), i
            assert np.array_equal(overlay_pixels(background, cam), _decode(png))


def test_a_model_input_of_the_overlays_size_is_reused_as_its_background() -> None:
    """A 224 px film for a 224 px model: the model input is the overlay background, bit for bit."""
    for height, width in ((224, 224), (300, 200)):
        model_input, decoded = load_model_input(png_bytes(chest_like(height, width, seed=5)), 224, 224)
        computed = overlay_background(decoded.pixels, 512)
        reused = overlay_background(decoded.pixels, 512, model_input[0])
        assert np.array_equal(reused, computed) and reused.dtype == computed.dtype
        assert np.shares_memory(reused, model_input) == ((height, width) == (224, 224))


def test_film_png_is_the_background_pixel_for_pixel() -> None:
    background = overlay_background(chest_like(120, 90, seed=4).astype(np.float32), 512)
    with Image.open(io.BytesIO(film_png(background))) as image:
        assert image.mode == "L"
        grey = np.asarray(image)
    assert np.array_equal(grey, np.clip(np.rint(background * 255.0), 0, 255).astype(np.uint8))
