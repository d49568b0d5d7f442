"""The lean PNG encoder: any decoder reads back exactly the pixels it was given."""

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from service.outputs.png import PNG_SIGNATURE, encode_png


def _decoded(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png), formats=["PNG"]) as image:
        image.load()
        return np.asarray(image)


@pytest.mark.parametrize(
    "shape", [(1, 1), (1, 7), (9, 1), (224, 224), (37, 53), (1, 1, 3), (64, 48, 3), (512, 300, 3)]
)
def test_round_trip_is_lossless(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(sum(shape))
    pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
    png = encode_png(pixels)
    assert png.startswith(PNG_SIGNATURE)
    assert np.array_equal(_decoded(png), pixels)


def test_up_filter_wraps_modulo_256() -> None:
    """Rows that step from 255 to 0 and back: the byte differences wrap, the pixels must not."""
    pixels = np.zeros((6, 5, 3), dtype=np.uint8)
    pixels[::2] = 255
    assert np.array_equal(_decoded(encode_png(pixels)), pixels)


def test_every_chunk_carries_a_valid_crc() -> None:
    png = encode_png(np.arange(300, dtype=np.uint8).reshape(10, 10, 3) % 7)
    position, kinds = len(PNG_SIGNATURE), []
    while position < len(png):
        length = int.from_bytes(png[position : position + 4], "big")
        kind, data = png[position + 4 : position + 8], png[position + 8 : position + 8 + length]
        assert zlib.crc32(kind + data) == int.from_bytes(
            png[position + 8 + length : position + 12 + length], "big"
        )
        kinds.append(kind)
        position += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]


def test_non_contiguous_input_is_encoded_as_seen() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    view = pixels[::2, ::3]
    assert np.array_equal(_decoded(encode_png(view)), view)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4), np.float32),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((0, 4), np.uint8),
        np.zeros(4, np.uint8),
    ],
)
def test_refuses_what_it_cannot_write(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        encode_png(bad)


def test_isal_and_zlib_deflate_give_the_same_pixels() -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    pixels[10:20] = 17  # some runs to compress
    fast, plain = encode_png(pixels), encode_png(pixels, deflate=zlib.compress)
    assert fast != plain  # really two encoders
    assert np.array_equal(_decoded(fast), pixels) and np.array_equal(_decoded(plain), pixels)
