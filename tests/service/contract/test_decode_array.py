"""Pixel arrays (MedMNIST .npz rows) through the contract: the same tensor as a PNG of the array."""

import io

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from service.contract import InputError, SourceFormat, decode_array, load_model_input, to_model_input

SIZE = 32


def _png(array: npt.NDArray[np.generic]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _random(shape: tuple[int, ...], dtype: type[np.unsignedinteger], seed: int) -> npt.NDArray[np.generic]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize(
    "array",
    [
        pytest.param(_random((28, 28), np.uint8, 0), id="gray-uint8-28"),
        pytest.param(_random((64, 48), np.uint16, 1), id="gray-uint16"),
        pytest.param(_random((28, 28, 3), np.uint8, 2), id="rgb-28"),
        pytest.param(_random((64, 64, 3), np.uint8, 3), id="rgb-64"),
        pytest.param(_random((40, 30, 4), np.uint8, 4), id="rgba"),
    ],
)
def test_array_gives_the_tensor_of_its_png(array: npt.NDArray[np.generic]) -> None:
    decoded = decode_array(array)
    assert decoded.source_format is SourceFormat.ARRAY
    assert (decoded.height, decoded.width) == array.shape[:2]
    from_png, png_decoded = load_model_input(_png(array), SIZE, SIZE)
    np.testing.assert_array_equal(decoded.pixels, png_decoded.pixels)
    np.testing.assert_array_equal(to_model_input(decoded, SIZE, SIZE), from_png)


def test_single_channel_and_big_endian_arrays_are_plain_gray() -> None:
    gray = _random((20, 24), np.uint16, 5)
    expected = decode_array(gray).pixels
    np.testing.assert_array_equal(decode_array(gray[:, :, np.newaxis]).pixels, expected)
    np.testing.assert_array_equal(decode_array(gray.astype(">u2")).pixels, expected)


@pytest.mark.parametrize(
    ("array", "code"),
    [
        pytest.param(np.zeros((8, 8), np.float32), "unsupported_array", id="float"),
        pytest.param(np.zeros((8, 8, 3), np.uint16), "unsupported_array", id="rgb-16bit"),
        pytest.param(
            np.zeros((2, 8, 8), np.uint8)[..., np.newaxis, np.newaxis], "unsupported_array", id="5d"
        ),
        pytest.param(np.zeros(8, np.uint8), "unsupported_array", id="1d"),
        pytest.param(np.zeros((0, 8), np.uint8), "empty_image", id="empty"),
    ],
)
def test_unsupported_arrays_are_refused(array: npt.NDArray[np.generic], code: str) -> None:
    with pytest.raises(InputError) as caught:
        decode_array(array)
    assert caught.value.code == code
