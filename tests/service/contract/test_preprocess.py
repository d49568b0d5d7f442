"""Decoded plane -> model input: shape, dtype, range, stretch invariances, and the golden tensor."""

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from service.contract import (
    PREPROCESSING_VERSION,
    DecodedImage,
    SourceFormat,
    decode_image,
    load_model_input,
    to_model_input,
)
from service.contract.preprocess import HIGH_PERCENTILE, LOW_PERCENTILE, resize_plane, stretch_contrast
from tests.factories import KERMANY_TRAIN, chest_like, golden_film, jpeg_bytes, png_bytes


def _decoded(pixels: npt.NDArray[np.floating]) -> DecodedImage:
    return DecodedImage(pixels=np.asarray(pixels, dtype=np.float32), source_format=SourceFormat.PNG)


FILM = (chest_like(96, 80, seed=9) * 4095).astype(np.float32)  # a 12-bit-like decoded plane


@pytest.mark.parametrize(("height", "width"), [(64, 64), (224, 224), (32, 48), (96, 80), (7, 300)])
def test_model_input_is_float32_1hw_in_unit_range(height: int, width: int) -> None:
    result = to_model_input(_decoded(FILM), height, width)
    assert result.dtype == np.float32
    assert result.shape == (1, height, width)
    assert np.all(np.isfinite(result))
    assert float(result.min()) == 0.0
    assert float(result.max()) == 1.0


def test_load_model_input_is_decode_then_to_model_input() -> None:
    data = png_bytes(chest_like(), bits=16)
    result, decoded = load_model_input(data, 40, 30)
    np.testing.assert_array_equal(result, to_model_input(decode_image(data), 40, 30))
    assert decoded.source_format is SourceFormat.PNG
    assert (decoded.height, decoded.width) == chest_like().shape


def test_stretch_saturates_exactly_the_outer_half_percents() -> None:
    """1000 distinct values: the 0.5th/99.5th percentiles (linear) are 4.995 and 994.005, so exactly
    five pixels clip to 0, five to 1, and the rest sit on the straight line between them."""
    assert (LOW_PERCENTILE, HIGH_PERCENTILE) == (0.5, 99.5)
    values = np.random.default_rng(0).permutation(1000).reshape(25, 40).astype(np.float32)
    result = stretch_contrast(values)
    assert np.count_nonzero(result == 0.0) == 5
    assert np.count_nonzero(result == 1.0) == 5
    inside = (values >= 5) & (values <= 994)
    np.testing.assert_allclose(result[inside], (values[inside] - 4.995) / (994.005 - 4.995), atol=1e-6)


@pytest.mark.parametrize(
    "plane",
    [
        FILM,
        np.round(chest_like(224, 224, seed=3) * 255).astype(np.float32),  # an 8-bit film as decoded
        -FILM,
        (chest_like(37, 91, seed=5) * 3.0e6).astype(np.float32),
    ],
    ids=["12-bit", "8-bit-224", "negative", "large"],
)
def test_stretch_is_the_plain_formula_bit_for_bit(plane: npt.NDArray[np.float32]) -> None:
    """Computed in one buffer for speed; the tensor must not move by one bit from the formula."""
    low, high = np.percentile(plane, [LOW_PERCENTILE, HIGH_PERCENTILE])
    plain = np.clip((plane.astype(np.float64) - low) / (high - low), 0.0, 1.0).astype(np.float32)
    result = stretch_contrast(plane)
    assert result.dtype == np.float32
    assert result.tobytes() == plain.tobytes()


@pytest.mark.parametrize("value", [0.0, 7.0, -1024.0, 65535.0, 3.0e6])
def test_constant_image_gives_zeros_without_nan(value: float) -> None:
    result = to_model_input(_decoded(np.full((50, 40), value)), 32, 32)
    assert result.dtype == np.float32
    assert result.shape == (1, 32, 32)
    assert np.all(result == 0.0)


def test_float_noise_on_a_flat_film_counts_as_flat() -> None:
    """A plane that differs only by float rounding (relative 1e-9) has no contrast to stretch:
    stretching it would blow rounding noise up to full range."""
    noise = np.random.default_rng(1).standard_normal((40, 40)) * 1e-6
    assert np.all(stretch_contrast((1000.0 + noise).astype(np.float32)) == 0.0)


@pytest.mark.parametrize(
    ("scale", "offset"), [(1.0, 0.0), (2.5, -1024.0), (0.01, 3.0), (1000.0, 5000.0), (1.0, -70000.0)]
)
def test_stretch_is_invariant_to_increasing_affine_maps(scale: float, offset: float) -> None:
    mapped = (FILM.astype(np.float64) * scale + offset).astype(np.float32)
    np.testing.assert_allclose(stretch_contrast(mapped), stretch_contrast(FILM), rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        to_model_input(_decoded(mapped), 64, 64), to_model_input(_decoded(FILM), 64, 64), rtol=0, atol=1e-5
    )


def test_stretch_inverts_under_negation() -> None:
    np.testing.assert_allclose(stretch_contrast(-FILM), 1.0 - stretch_contrast(FILM), rtol=0, atol=1e-6)


def test_stretch_is_not_invariant_to_a_non_affine_map() -> None:
    """Control: the invariance above is a property of affine maps, not of any monotone map."""
    gamma = (FILM / 4095) ** 2.2
    assert float(np.abs(stretch_contrast(gamma.astype(np.float32)) - stretch_contrast(FILM)).max()) > 0.1


def test_resize_is_identity_at_the_same_size_and_keeps_constants() -> None:
    assert resize_plane(FILM, *FILM.shape) is FILM
    resized = resize_plane(np.full((100, 90), 123.25, dtype=np.float32), 33, 47)
    assert resized.shape == (33, 47)
    assert resized.dtype == np.float32
    np.testing.assert_allclose(resized, 123.25, rtol=1e-6)


def test_resize_does_not_keep_aspect_ratio() -> None:
    """Top half dark, bottom half bright, resized to a wide strip: still top dark / bottom bright."""
    plane = np.zeros((100, 50), dtype=np.float32)
    plane[50:] = 1000.0
    result = to_model_input(_decoded(plane), 20, 200)[0]
    assert np.all(result[:8] == 0.0)
    assert np.all(result[12:] == 1.0)


def test_resize_keeps_intensities_in_range() -> None:
    """Bilinear (no overshooting kernel): no resized value outside the source range."""
    resized = resize_plane(FILM, 57, 41)
    assert float(resized.min()) >= float(FILM.min())
    assert float(resized.max()) <= float(FILM.max())


# --- golden tensor ------------------------------------------------------------------------------
#
# The numbers below were computed once from this code and pasted as literals. They pin the whole
# contract (PNG decoding, bilinear resize, percentile stretch). ANY change that moves them is a
# change to the pixel contract: bump PREPROCESSING_VERSION (model cards carry it and the service
# refuses a model trained under another version) and update these numbers in the same commit.

GOLDEN_VERSION = "cxr-gray-bilinear-p0.5-p99.5-v1"
GOLDEN_SIZE = (64, 56)
GOLDEN_MEAN = 0.6714055265216585
GOLDEN_STD = 0.24369832106313452
GOLDEN_SATURATED = (18, 18)  # pixels at exactly 0 and exactly 1
GOLDEN_ROW_32_SUM = 23.772131281672046
GOLDEN_COLUMN_28_SUM = 48.54716497659683
GOLDEN_PIXELS = {
    (0, 0, 0): 0.8391445875167847,
    (0, 10, 5): 0.8334447145462036,
    (0, 20, 44): 0.5338977575302124,
    (0, 32, 28): 0.5963225960731506,
    (0, 40, 17): 0.15059907734394073,
    (0, 50, 30): 0.7992870211601257,
}


def test_golden_tensor() -> None:
    assert PREPROCESSING_VERSION == GOLDEN_VERSION, "new contract version: recompute the golden numbers"
    result, decoded = load_model_input(png_bytes(golden_film(), bits=16), *GOLDEN_SIZE)
    assert decoded.pixels.shape == (120, 100)
    assert result.shape == (1, *GOLDEN_SIZE)
    assert result.dtype == np.float32
    values = result.astype(np.float64)
    assert float(values.mean()) == pytest.approx(GOLDEN_MEAN, abs=1e-6)
    assert float(values.std()) == pytest.approx(GOLDEN_STD, abs=1e-6)
    assert (int(np.count_nonzero(result == 0.0)), int(np.count_nonzero(result == 1.0))) == GOLDEN_SATURATED
    assert float(values[0, 32].sum()) == pytest.approx(GOLDEN_ROW_32_SUM, abs=1e-5)
    assert float(values[0, :, 28].sum()) == pytest.approx(GOLDEN_COLUMN_28_SUM, abs=1e-5)
    for index, expected in GOLDEN_PIXELS.items():
        assert float(result[index]) == pytest.approx(expected, abs=1e-6), index


def test_golden_film_is_the_same_film_in_8_bits_within_quantisation() -> None:
    """The 8-bit PNG of the golden film lands near the golden tensor: catches a golden film that
    accidentally depends on 16-bit-only detail, and bounds 8-bit quantisation (see test_raster)."""
    eight, _ = load_model_input(png_bytes(golden_film()), *GOLDEN_SIZE)
    sixteen, _ = load_model_input(png_bytes(golden_film(), bits=16), *GOLDEN_SIZE)
    assert float(np.abs(eight - sixteen).max()) < 0.02


# --- real data ------------------------------------------------------------------------------------


def _kermany_files() -> list[Path]:
    """The first NORMAL and the first PNEUMONIA film, if the shared data set is mounted."""
    if not KERMANY_TRAIN.is_dir():
        return []
    firsts = [sorted((KERMANY_TRAIN / label).glob("*.jpeg"))[:1] for label in ("NORMAL", "PNEUMONIA")]
    return [path for first in firsts for path in first]


@pytest.mark.skipif(not _kermany_files(), reason=f"Kermany JPEGs not found under {KERMANY_TRAIN}")
def test_real_kermany_jpeg_gives_a_valid_model_input() -> None:
    files = _kermany_files()
    assert len(files) == 2
    for path in files:
        result, decoded = load_model_input(path.read_bytes(), 224, 224)
        assert decoded.source_format is SourceFormat.JPEG
        assert decoded.pixels.shape == (224, 224)
        assert result.shape == (1, 224, 224)
        assert result.dtype == np.float32
        assert float(result.min()) == 0.0
        assert float(result.max()) == 1.0
        assert float(result.std()) > 0.1  # a real film, not a flat or broken decode


def test_jpeg_round_trip_of_a_film_stays_close_to_the_film() -> None:
    """The same check without the shared data set, so it always runs."""
    film = chest_like(224, 224, seed=2)
    from_jpeg, _ = load_model_input(jpeg_bytes(film, rgb=True), 224, 224)
    from_png, _ = load_model_input(png_bytes(film, bits=16), 224, 224)
    assert float(np.abs(from_jpeg - from_png).mean()) < 0.02
