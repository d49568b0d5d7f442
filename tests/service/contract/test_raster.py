"""PNG and JPEG decoding: every mode to one float32 luminance plane, bombs and animations refused."""

import time

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageFile

from service.contract import DecodeLimits, InputError, SourceFormat, decode_image, to_model_input
from tests.factories import (
    animated_bytes,
    chest_like,
    exif_bytes,
    gray_image,
    jpeg_bytes,
    jpeg_claiming_size,
    pillow_bytes,
    png_bytes,
    png_claiming_size,
)

PLANE = chest_like(96, 80, seed=3)
LEVELS_8 = np.round(PLANE * 255).astype(np.float32)  # what the 8-bit encoders store
LEVELS_16 = np.round(PLANE * 65535).astype(np.float32)
LUMA_ROUNDING = 1e-3  # 0.299 + 0.587 + 0.114 in float32 arithmetic on a grey pixel


def _error(data: bytes, limits: DecodeLimits | None = None) -> InputError:
    with pytest.raises(InputError) as caught:
        decode_image(data, limits)
    return caught.value


def _plane(data: bytes) -> npt.NDArray[np.float32]:
    decoded = decode_image(data)
    assert decoded.pixels.dtype == np.float32
    assert decoded.pixels.ndim == 2
    assert decoded.dicom is None
    return decoded.pixels


def test_png_8bit_grayscale_is_exact() -> None:
    decoded = decode_image(png_bytes(PLANE))
    assert decoded.source_format is SourceFormat.PNG
    assert (decoded.height, decoded.width) == PLANE.shape
    np.testing.assert_array_equal(decoded.pixels, LEVELS_8)


def test_png_16bit_grayscale_keeps_all_16_bits() -> None:
    pixels = _plane(png_bytes(PLANE, bits=16))
    np.testing.assert_array_equal(pixels, LEVELS_16)
    assert pixels.max() > 255  # not silently reduced to 8 bits


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "LA"])
def test_png_colour_and_alpha_modes_of_a_grey_film_give_its_grey_levels(mode: str) -> None:
    np.testing.assert_allclose(_plane(png_bytes(PLANE, mode=mode)), LEVELS_8, rtol=0, atol=LUMA_ROUNDING)


def test_png_rgb_is_reduced_to_bt601_luma() -> None:
    rgb = np.zeros((4, 3, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # pure-ish red, green, blue columns so the weights are visible
    rgb[:, 1, :] = (0, 200, 0)
    rgb[:, 2, :] = (0, 0, 200)
    pixels = _plane(pillow_bytes(Image.fromarray(rgb, mode="RGB"), "PNG"))
    np.testing.assert_allclose(pixels[0], [0.299 * 200, 0.587 * 200, 0.114 * 200], rtol=1e-6)


def test_png_alpha_is_ignored_not_composited() -> None:
    rgba = np.asarray(gray_image(PLANE).convert("RGBA")).copy()
    rgba[..., 3] = 0  # fully transparent everywhere
    rgba[:10, :, 3] = 255
    pixels = _plane(pillow_bytes(Image.fromarray(rgba, mode="RGBA"), "PNG"))
    np.testing.assert_allclose(pixels, LEVELS_8, atol=LUMA_ROUNDING)


def test_png_colour_palette_gives_the_luma_of_its_colours() -> None:
    rng = np.random.default_rng(7)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8), mode="RGB")
    paletted = rgb.quantize(colors=16)
    expected = _plane(pillow_bytes(paletted.convert("RGB"), "PNG"))
    pixels = _plane(pillow_bytes(paletted, "PNG"))
    np.testing.assert_array_equal(pixels, expected)
    assert np.unique(pixels).size > 4  # colours really became different grey levels


def test_png_1bit_gives_black_and_white_with_the_film_brightness() -> None:
    pixels = _plane(png_bytes(PLANE, mode="1"))
    assert set(np.unique(pixels).tolist()) == {0.0, 255.0}
    # Pillow dithers when writing mode 1, which preserves the mean brightness.
    assert abs(float(pixels.mean()) / 255 - float(PLANE.mean())) < 0.05


@pytest.mark.parametrize("rgb", [False, True], ids=["gray", "rgb"])
def test_jpeg_decodes_deterministically_close_to_the_film(rgb: bool) -> None:
    data = jpeg_bytes(PLANE, rgb=rgb)
    first, second = _plane(data), _plane(data)
    np.testing.assert_array_equal(first, second)
    assert decode_image(data).source_format is SourceFormat.JPEG
    error = np.abs(first - PLANE * 255)
    # Quality-95 JPEG of a noisy film: a couple of grey levels on average, a handful at worst.
    assert float(error.mean()) < 3.0
    assert float(error.max()) < 16.0


def test_rgb_jpeg_of_a_grey_film_equals_the_grey_jpeg() -> None:
    gray = _plane(jpeg_bytes(PLANE))
    rgb = _plane(jpeg_bytes(PLANE, rgb=True))
    np.testing.assert_allclose(rgb, gray, atol=0.5)


def test_8bit_and_16bit_png_of_one_film_give_the_same_model_input() -> None:
    """Quantisation to 8 bits moves a pixel by at most 0.5/255 of full scale; the stretch divides by
    the film's 0.5-99.5 percentile span (about 0.7 of full scale here), so per-pixel differences stay
    below ~0.003, and bilinear resizing only averages them."""
    eight = to_model_input(decode_image(png_bytes(PLANE)), 64, 64)
    sixteen = to_model_input(decode_image(png_bytes(PLANE, bits=16)), 64, 64)
    difference = np.abs(eight - sixteen)
    assert float(difference.max()) < 0.01
    assert float(difference.mean()) < 0.003


# EXIF orientation -> the numpy operation that displays the stored pixels upright.
ORIENTATIONS = {
    1: lambda p: p,
    2: np.fliplr,
    3: lambda p: np.rot90(p, 2),
    6: lambda p: np.rot90(p, -1),  # stored rotated: turn 90 degrees clockwise to view
    8: lambda p: np.rot90(p, 1),
}


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_exif_orientation_is_applied(orientation: int, image_format: str) -> None:
    # Upright reference: the identical encoder output with Orientation=1, so only the tag differs.
    stored = _plane(exif_bytes(PLANE, 1, image_format=image_format))
    shown = _plane(exif_bytes(PLANE, orientation, image_format=image_format))
    np.testing.assert_array_equal(shown, ORIENTATIONS[orientation](stored))
    if orientation in (6, 8):
        assert shown.shape == PLANE.shape[::-1]


def test_truncated_png_is_corrupt() -> None:
    data = png_bytes(PLANE)
    for cut in (len(data) // 2, len(data) - 40, 40, 8):
        error = _error(data[:cut])
        assert (error.code, error.status) == ("corrupt_image", 400), cut


def test_png_missing_only_its_trailer_still_gives_every_pixel() -> None:
    """Pillow tolerates a missing IEND chunk / checksum when the pixel stream itself is complete;
    that is acceptable only because nothing of the image is lost, which is what this pins."""
    data = png_bytes(PLANE)
    np.testing.assert_array_equal(_plane(data[:-12]), LEVELS_8)


def test_truncated_jpeg_is_corrupt() -> None:
    data = jpeg_bytes(PLANE)
    for cut in (len(data) // 2, len(data) - 40, 3):
        error = _error(data[:cut])
        assert (error.code, error.status) == ("corrupt_image", 400), cut


def test_png_with_bad_header_crc_is_corrupt() -> None:
    data = bytearray(png_bytes(PLANE))
    data[29] ^= 0xFF  # inside the IHDR CRC
    assert _error(bytes(data)).code == "corrupt_image"


@pytest.fixture
def forbid_pixel_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any decompression fail loudly: a refused bomb must never reach ``load()``."""

    def load(self: ImageFile.ImageFile) -> None:
        raise AssertionError(f"pixels of a {self.size} image were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


@pytest.mark.usefixtures("forbid_pixel_loading")
@pytest.mark.parametrize(
    ("data", "limits"),
    [
        # Far above Pillow's own bomb threshold: Pillow refuses while opening.
        pytest.param(png_claiming_size(30_000, 30_000), None, id="png-30000x30000"),
        pytest.param(png_claiming_size(30_000, 30_000, bit_depth=16, color_type=6), None, id="png-rgba64"),
        # Above the contract's 50 MP budget but below Pillow's threshold: the contract's own check.
        pytest.param(png_claiming_size(8_000, 8_000), None, id="png-8000x8000"),
        pytest.param(png_claiming_size(100, 100), DecodeLimits(max_pixels=9_999), id="png-custom-limit"),
        pytest.param(jpeg_claiming_size(30_000, 30_000), None, id="jpeg-30000x30000"),
        pytest.param(jpeg_claiming_size(8_000, 8_000), None, id="jpeg-8000x8000"),
    ],
)
def test_oversized_header_is_refused_before_decoding(data: bytes, limits: DecodeLimits | None) -> None:
    assert len(data) < 2_000
    started = time.perf_counter()
    error = _error(data, limits)
    elapsed = time.perf_counter() - started
    assert (error.code, error.status) == ("too_many_pixels", 422)
    assert elapsed < 0.5  # decompressing even the 8000x8000 claim would take far longer


def test_pixel_budget_is_inclusive() -> None:
    small = png_bytes(chest_like(10, 10))
    assert decode_image(small, DecodeLimits(max_pixels=100)).pixels.shape == (10, 10)
    assert _error(small, DecodeLimits(max_pixels=99)).code == "too_many_pixels"


def test_small_claimed_size_with_missing_pixels_is_corrupt_not_a_bomb() -> None:
    """Control for the bomb test: the same hand-made file under the budget fails as corrupt, so the
    bomb test really exercises the pixel check and not a decoding error."""
    assert _error(png_claiming_size(100, 100)).code == "corrupt_image"


@pytest.mark.parametrize("image_format", ["PNG", "MPO"], ids=["apng", "multi-picture-jpeg"])
def test_multi_frame_raster_is_refused(image_format: str) -> None:
    data = animated_bytes([PLANE, PLANE[::-1]], image_format=image_format)
    error = _error(data)
    assert (error.code, error.status) == ("multi_frame", 422)


def test_single_frame_apng_writer_output_is_accepted() -> None:
    data = animated_bytes([PLANE])
    np.testing.assert_array_equal(_plane(data), LEVELS_8)


# --- issue 15: bytes after decode, damaged PNGs --------------------------------------------------


def test_decoded_bytes_not_pixels_bound_a_decode() -> None:
    """A 7071 x 7071 RGBA PNG of zeros is 194 KB and inside the 50 Mpx budget, but Pillow holds it in
    200 MB (and the old float RGB path took 800 MB): refused from its header. The same size in
    16-bit grey (100 MB) is within the default budget."""
    rgba = _error(png_claiming_size(7071, 7071, color_type=6))
    assert (rgba.code, rgba.status) == ("decoded_too_large", 422)
    grey16 = _error(png_claiming_size(7071, 7071, bit_depth=16))
    assert grey16.code != "decoded_too_large"  # passes the budget; then fails as the stub it is


def test_a_png_with_a_bad_idat_crc_is_refused() -> None:
    """Pillow decodes IDAT without checking its CRC: a damaged film would be scored as it is."""
    data = bytearray(png_bytes(chest_like(48, 40)))
    idat = data.index(b"IDAT")
    length = int.from_bytes(data[idat - 4 : idat], "big")
    data[idat + 4 + length] ^= 0xFF  # first byte of the IDAT chunk's CRC
    error = _error(bytes(data))
    assert (error.code, error.status) == ("corrupt_image", 400)
    assert "CRC" in error.detail


def test_a_colour_jpeg_decodes_to_its_luma_plane() -> None:
    """Colour JPEGs are decoded straight to the luma plane (Pillow's draft mode): the same film in
    grey and in colour stay within JPEG rounding of each other."""
    plane = chest_like(64, 48, seed=5)
    grey = decode_image(jpeg_bytes(plane)).pixels
    colour = decode_image(jpeg_bytes(plane, rgb=True)).pixels
    assert np.abs(grey - colour).max() <= 3.0
