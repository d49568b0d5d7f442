"""Format detection: the bytes decide, never a file name or a Content-Type."""

import io

import numpy as np
import pytest
from pydicom.uid import JPEG2000Lossless, RLELossless

from service.contract import InputError, SourceFormat, decode_image, load_model_input
from service.contract.sniff import DICOM_MAGIC, DICOM_MAGIC_OFFSET, PNG_MAGIC, sniff_format
from tests.factories import (
    chest_like,
    dicom_bytes,
    dicom_dataset,
    gray_image,
    jpeg_bytes,
    pillow_bytes,
    png_bytes,
)

PLANE = chest_like(48, 40)


def _refused(data: bytes) -> InputError:
    with pytest.raises(InputError) as caught:
        sniff_format(data)
    return caught.value


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(png_bytes(PLANE), SourceFormat.PNG, id="png-8bit"),
        pytest.param(png_bytes(PLANE, bits=16), SourceFormat.PNG, id="png-16bit"),
        pytest.param(png_bytes(PLANE, mode="RGB"), SourceFormat.PNG, id="png-rgb"),
        pytest.param(jpeg_bytes(PLANE), SourceFormat.JPEG, id="jpeg-gray"),
        pytest.param(jpeg_bytes(PLANE, rgb=True), SourceFormat.JPEG, id="jpeg-rgb"),
        pytest.param(dicom_bytes(dicom_dataset(PLANE)), SourceFormat.DICOM, id="dicom-native"),
        pytest.param(
            dicom_bytes(dicom_dataset(PLANE), transfer_syntax=RLELossless), SourceFormat.DICOM, id="dicom-rle"
        ),
        pytest.param(
            dicom_bytes(dicom_dataset(PLANE), transfer_syntax=JPEG2000Lossless),
            SourceFormat.DICOM,
            id="dicom-j2k",
        ),
    ],
)
def test_format_is_detected_from_content(data: bytes, expected: SourceFormat) -> None:
    assert sniff_format(data) is expected
    # The decoder dispatches on the same sniffed format and records it.
    assert decode_image(data).source_format is expected


def test_png_bytes_are_png_whatever_follows_the_signature() -> None:
    """A PNG that a client might have named ``film.dcm``: only the bytes count, and a PNG signature
    wins even when the bytes happen to spell 'DICM' at offset 128."""
    data = bytearray(png_bytes(PLANE))
    data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] = DICOM_MAGIC
    assert sniff_format(bytes(data)) is SourceFormat.PNG


def test_dicom_marker_decides_whatever_the_preamble_holds() -> None:
    data = bytearray(dicom_bytes(dicom_dataset(PLANE)))
    data[:DICOM_MAGIC_OFFSET] = b"not-a-png-not-a-jpeg".ljust(DICOM_MAGIC_OFFSET, b"\x20")
    assert sniff_format(bytes(data)) is SourceFormat.DICOM
    assert decode_image(bytes(data)).height == PLANE.shape[0]


def test_dicom_without_preamble_is_sniffed_as_dicom() -> None:
    """A bare dataset (no 128-byte preamble, no 'DICM'), as older archives write them, is DICOM:
    ``test_dicom_header`` decodes such files; here only the sniffing."""
    buffer = io.BytesIO()
    dicom_dataset(PLANE).save_as(buffer, enforce_file_format=False)
    data = buffer.getvalue()
    assert data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] != DICOM_MAGIC
    assert sniff_format(data) is SourceFormat.DICOM


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x08\x00\x05\x00" + b"\xff\xff\xff\x7f" + bytes(64), id="implicit-length-past-eof"),
        pytest.param(b"\x08\x00\x05\x20XX\x02\x00ab", id="element-number-implausible"),
        pytest.param(b"\x10\x00\x10\x00PN\x04\x00Zz^Q", id="first-group-not-0008"),
    ],
)
def test_bytes_that_only_look_like_a_raw_dataset_are_unsupported(data: bytes) -> None:
    assert _refused(data).code == "unsupported_format"


def test_dicom_marker_at_the_wrong_offset_is_unsupported() -> None:
    data = dicom_bytes(dicom_dataset(PLANE))
    shifted = data[1:]  # 'DICM' now at 127
    assert _refused(shifted).code == "unsupported_format"


@pytest.mark.parametrize("image_format", ["GIF", "TIFF", "BMP", "WEBP"])
def test_other_real_image_formats_are_unsupported(image_format: str) -> None:
    """Pillow could open these; the contract must not fall through to Pillow's own detection."""
    data = pillow_bytes(gray_image(PLANE), image_format)
    error = _refused(data)
    assert (error.code, error.status) == ("unsupported_format", 415)
    with pytest.raises(InputError) as caught:
        decode_image(data)
    assert caught.value.code == "unsupported_format"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GIF89a" + bytes(200), id="gif-magic"),
        pytest.param(b"II*\x00" + bytes(200), id="tiff-le-magic"),
        pytest.param(b"MM\x00*" + bytes(200), id="tiff-be-magic"),
        pytest.param(b"BM" + bytes(200), id="bmp-magic"),
        pytest.param(b"%PDF-1.7\n" + bytes(200), id="pdf"),
        pytest.param(PNG_MAGIC[:4], id="png-magic-prefix-only"),
        pytest.param(b"\xff\xd8", id="jpeg-magic-prefix-only"),
        pytest.param(bytes(DICOM_MAGIC_OFFSET + 3), id="short-of-dicom-marker"),
        pytest.param(b"\x00", id="one-byte"),
        pytest.param(b"DICM" + bytes(200), id="dicm-at-zero"),
    ],
)
def test_unknown_magic_is_unsupported(data: bytes) -> None:
    error = _refused(data)
    assert (error.code, error.status) == ("unsupported_format", 415)


def test_random_bytes_are_unsupported() -> None:
    rng = np.random.default_rng(20240102)
    for _ in range(20):
        data = rng.bytes(int(rng.integers(1, 600)))
        if data.startswith((PNG_MAGIC, b"\xff\xd8\xff")) or data[128:132] == DICOM_MAGIC:
            continue  # astronomically unlikely; keeps the test honest if it ever happens
        assert _refused(data).code == "unsupported_format"


def test_empty_upload_is_refused_as_empty() -> None:
    error = _refused(b"")
    assert (error.code, error.status) == ("empty_file", 400)
    with pytest.raises(InputError) as caught:
        load_model_input(b"", 32, 32)
    assert caught.value.code == "empty_file"


def test_input_error_carries_code_detail_and_status() -> None:
    error = _refused(b"GIF89a")
    assert str(error).startswith("unsupported_format: ")
    assert error.detail in str(error)
    assert isinstance(error, ValueError)
