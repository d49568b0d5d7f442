"""Checks made before any decoder runs: compressed-frame headers, deflated datasets, preambles,
DICOMDIRs, uncompressed lengths and PNG metadata bombs.

Where a check exists to keep a decoder from running (a bomb, a CPU trap), the test records every
call into a DICOM pixel decoder and requires none, so the refusal is proven to come from the check
and not from a decoder failing after the damage is done.
"""

import io
import struct
import zlib

import jpeg_ls
import numpy as np
import numpy.typing as npt
import pytest
from openjpeg.utils import encode as encode_j2k
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.decoders import rle as pydicom_rle
from pydicom.uid import (
    UID,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from service.contract import DecodeLimits, InputError, decode_image
from service.contract.codestream import FrameHeader, frame_header
from tests.factories import (
    chest_like,
    deflated_dicom_bytes,
    dicom_bytes,
    dicom_dataset,
    dicomdir_bytes,
    encapsulated_dicom_bytes,
    pillow_bytes,
    png_bytes,
    png_with_chunk,
)

FILM = chest_like(40, 32, seed=6)
MPEG2_MAIN_PROFILE = UID("1.2.840.10008.1.2.4.100")  # encapsulated video: no bounded decoder


def _grey8() -> Dataset:
    return dicom_dataset(FILM, bits_stored=8, bits_allocated=8)


def _levels(shape: tuple[int, int], value: int = 128) -> npt.NDArray[np.uint8]:
    return np.full(shape, value, dtype=np.uint8)


def _hierarchical(height: int, width: int) -> bytes:
    """A real 40 x 32 frame behind a DHP segment (hierarchical JPEG) declaring the whole image bigger."""
    frame = pillow_bytes(Image.fromarray(_levels((40, 32))), "JPEG")
    dhp = b"\xff\xde" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return frame[:2] + dhp + frame[2:]


def _error(data: bytes, limits: DecodeLimits | None = None) -> InputError:
    with pytest.raises(InputError) as caught:
        decode_image(data, limits)
    return caught.value


def _record_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def decode(self: Dataset) -> None:
        calls.append(str(self.file_meta.TransferSyntaxUID))
        raise RuntimeError("this test allows no decoding")

    monkeypatch.setattr(Dataset, "pixel_array", property(decode))
    return calls


@pytest.fixture
def decoder_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every attempt to decode DICOM pixels, recorded: the contract turns a decoder's exception into
    a refusal too, so only the record shows whether the check came first."""
    return _record_pixel_decoding(monkeypatch)


# --- frame headers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transfer_syntax", "frame", "expected"),
    [
        pytest.param(
            JPEGBaseline8Bit,
            pillow_bytes(Image.fromarray(_levels((40, 32))), "JPEG"),
            FrameHeader(40, 32, 1),
            id="jpeg-grey",
        ),
        pytest.param(
            JPEGBaseline8Bit,
            pillow_bytes(Image.new("RGB", (300, 7)), "JPEG", progressive=True),
            FrameHeader(7, 300, 3),
            id="jpeg-progressive-rgb",
        ),
        pytest.param(
            JPEGLSLossless, bytes(jpeg_ls.encode(_levels((50, 20)))), FrameHeader(50, 20, 1), id="jpeg-ls"
        ),
        pytest.param(
            JPEG2000Lossless,
            encode_j2k(_levels((33, 70)), use_mct=False),
            FrameHeader(33, 70, 1),
            id="j2k-codestream",
        ),
        pytest.param(
            JPEG2000Lossless,
            encode_j2k(_levels((33, 70)), use_mct=False, codec_format=1),
            FrameHeader(33, 70, 1),
            id="jp2-wrapped",
        ),
    ],
)
def test_frame_header_is_read_from_real_encoder_output(
    transfer_syntax: UID, frame: bytes, expected: FrameHeader
) -> None:
    assert frame_header(transfer_syntax, frame) == expected


@pytest.mark.parametrize(
    ("transfer_syntax", "frame"),
    [
        pytest.param(JPEGBaseline8Bit, b"", id="empty"),
        pytest.param(JPEGBaseline8Bit, b"\x00\x01\x02\x03" * 8, id="no-soi"),
        pytest.param(
            JPEGBaseline8Bit, b"\xff\xd8\xff\xda\x00\x08" + bytes(20), id="scan-before-frame-header"
        ),
        pytest.param(JPEGBaseline8Bit, b"\xff\xd8\xff\xe0\xff\xff" + bytes(20), id="segment-past-end"),
        pytest.param(JPEGBaseline8Bit, b"\xff\xd8\xff\xc0\x00\x11\x08\x00", id="frame-header-cut"),
        pytest.param(JPEG2000Lossless, b"\xff\x4f\xff\x51\x00\x29", id="siz-cut"),
        pytest.param(JPEG2000Lossless, b"\xff\xd8" + bytes(60), id="jpeg-in-j2k"),
    ],
)
def test_unreadable_frame_header_is_none(transfer_syntax: UID, frame: bytes) -> None:
    assert frame_header(transfer_syntax, frame) is None


@pytest.mark.parametrize(
    ("transfer_syntax", "frame"),
    [
        # 1 KB that a decoder would have expanded to 16 MB before noticing Rows and Columns.
        pytest.param(JPEGLSLossless, bytes(jpeg_ls.encode(_levels((4000, 4000)))), id="jpeg-ls-4000x4000"),
        pytest.param(JPEG2000Lossless, encode_j2k(_levels((600, 500)), use_mct=False), id="j2k-600x500"),
        pytest.param(
            JPEGBaseline8Bit, pillow_bytes(Image.fromarray(_levels((32, 40))), "JPEG"), id="jpeg-transposed"
        ),
        pytest.param(
            JPEGBaseline8Bit,
            pillow_bytes(Image.new("RGB", (32, 40), (9, 9, 9)), "JPEG"),
            id="jpeg-3-components",
        ),
        pytest.param(JPEGBaseline8Bit, b"\xff\xd8\xff\xd9", id="jpeg-without-frame-header"),
        pytest.param(JPEGBaseline8Bit, _hierarchical(30_000, 30_000), id="jpeg-hierarchical-30000x30000"),
    ],
)
def test_frame_disagreeing_with_rows_and_columns_is_refused_before_decoding(
    transfer_syntax: UID, frame: bytes, decoder_calls: list[str]
) -> None:
    error = _error(encapsulated_dicom_bytes(_grey8(), [frame], transfer_syntax))
    assert (error.code, error.status) == ("corrupt_dicom", 400)
    assert decoder_calls == []


@pytest.mark.parametrize("transfer_syntax", [JPEGBaseline8Bit, JPEGLSLossless], ids=["jpeg", "jpeg-ls"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_frame_cut_before_its_end_marker_is_refused_before_decoding(
    transfer_syntax: UID, keep: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CharLS spent 6-12 s on a cut-off 1 KB JPEG-LS scan, and libjpeg fills the gap in silently."""
    frame = _first_frame(dicom_bytes(_grey8(), transfer_syntax=transfer_syntax))
    assert frame.rstrip(b"\0").endswith(b"\xff\xd9")
    cut = encapsulated_dicom_bytes(_grey8(), [frame[: int(len(frame) * keep)]], transfer_syntax)
    calls = _record_pixel_decoding(monkeypatch)
    error = _error(cut)
    assert (error.code, error.status) == ("corrupt_dicom", 400)
    assert "end-of-image" in error.detail
    assert calls == []


def _first_frame(data: bytes) -> bytes:
    import pydicom
    from pydicom.encaps import generate_frames

    return next(generate_frames(pydicom.dcmread(io.BytesIO(data)).PixelData, number_of_frames=1))


def test_two_jpeg_frames_where_one_is_announced_are_refused() -> None:
    frame = _first_frame(dicom_bytes(_grey8(), transfer_syntax=JPEGBaseline8Bit))
    error = _error(encapsulated_dicom_bytes(_grey8(), [frame, frame], JPEGBaseline8Bit))
    assert error.code == "corrupt_dicom"


def test_encapsulated_syntax_without_a_bounded_decoder_is_refused_before_decoding(
    decoder_calls: list[str],
) -> None:
    error = _error(encapsulated_dicom_bytes(_grey8(), [b"\x00\x00\x01\xb3" + bytes(60)], MPEG2_MAIN_PROFILE))
    assert (error.code, error.status) == ("unsupported_transfer_syntax", 422)
    assert decoder_calls == []


def test_rle_frame_refused_by_pylibjpeg_is_not_expanded_by_another_decoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pylibjpeg-rle refuses a header with junk in an unused offset slot; pydicom's fallback decoder
    would then expand the whole segment, 64 bytes per 2 (found by fuzzing)."""
    header = struct.pack("<16I", 1, 64, *[0] * 7, 117_440_512, *[0] * 6)
    data = encapsulated_dicom_bytes(_grey8(), [header + bytes([0x81, 7]) * 4096], RLELossless)

    calls: list[int] = []
    expand = pydicom_rle._rle_decode_segment

    def counted(src: bytes) -> bytearray:  # pydicom swallows a decoder's exception: count instead
        calls.append(len(src))
        return expand(src)

    monkeypatch.setattr(pydicom_rle, "_rle_decode_segment", counted)
    error = _error(data)
    assert (error.code, error.status) == ("corrupt_dicom", 400)
    assert calls == [], "pydicom's own RLE decoder ran"


# --- deflated datasets --------------------------------------------------------------------------


def test_deflated_dataset_decodes_like_the_plain_one() -> None:
    plain = decode_image(dicom_bytes(dicom_dataset(FILM)))
    deflated = decode_image(deflated_dicom_bytes(dicom_dataset(FILM)))
    np.testing.assert_array_equal(deflated.pixels, plain.pixels)


def test_deflate_bomb_is_refused_before_inflating() -> None:
    """64 MiB of zeros in ~64 KB, against a 1 MP budget (cap 4 bytes a pixel + 1 MiB = 5 MiB)."""
    data = deflated_dicom_bytes(dicom_dataset(FILM), extra_zeros=64 << 20)
    assert len(data) < 128 * 1024
    error = _error(data, DecodeLimits(max_pixels=1_000_000))
    assert (error.code, error.status) == ("decompressed_too_large", 422)


def test_deflated_dataset_just_within_the_cap_is_read() -> None:
    """Control for the bomb: the same construction, inflating below the cap, decodes."""
    data = deflated_dicom_bytes(dicom_dataset(FILM), extra_zeros=3 << 20)
    assert decode_image(data, DecodeLimits(max_pixels=1_000_000)).pixels.shape == FILM.shape


def test_corrupt_deflate_stream_is_corrupt_dicom() -> None:
    data = bytearray(deflated_dicom_bytes(dicom_dataset(FILM)))
    meta_end = 144 + struct.unpack_from("<I", data, 140)[0]
    data[meta_end : meta_end + 16] = b"\xff" * 16
    assert _error(bytes(data)).code == "corrupt_dicom"


# --- preamble, DICOMDIR, uncompressed length -----------------------------------------------------


def _with_preamble(preamble: bytes) -> bytes:
    return preamble.ljust(128, b"\0") + dicom_bytes(dicom_dataset(FILM))[128:]


@pytest.mark.parametrize(
    "preamble",
    [b"MZ\x90\x00", b"\x7fELF\x02\x01\x01", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe", b"#!/bin/sh\n"],
    ids=["pe", "elf", "mach-o", "universal", "script"],
)
def test_executable_preamble_is_refused(preamble: bytes) -> None:
    error = _error(_with_preamble(preamble))
    assert (error.code, error.status) == ("executable_preamble", 422)


@pytest.mark.parametrize(
    "preamble", [b"", b"II*\x00\x08\x00\x00\x00", b"vendor text"], ids=["zeros", "tiff", "text"]
)
def test_other_preambles_are_accepted(preamble: bytes) -> None:
    assert decode_image(_with_preamble(preamble)).pixels.shape == FILM.shape


def test_dicomdir_is_refused_with_its_own_code() -> None:
    error = _error(dicomdir_bytes())
    assert (error.code, error.status) == ("dicomdir", 422)


@pytest.mark.parametrize("extra", [2, 160, 2560])
def test_uncompressed_pixel_data_longer_than_the_frame_is_refused(extra: int) -> None:
    """Less than a frame too long: pydicom would silently drop the excess (a wrong Columns then reads
    as a sheared film); exactly a frame too long: it would read two frames."""
    dataset = dicom_dataset(FILM)
    dataset.PixelData = dataset.PixelData + bytes(extra)
    error = _error(dicom_bytes(dataset))
    assert (error.code, error.status) == ("corrupt_dicom", 400)
    assert "bytes" in error.detail


def test_odd_length_frame_with_its_pad_byte_is_accepted() -> None:
    plane = chest_like(3, 3)
    dataset = dicom_dataset(plane, bits_stored=8, bits_allocated=8)
    data = dicom_bytes(dataset)  # 9 bytes of pixels, written as 10
    np.testing.assert_array_equal(decode_image(data).pixels, np.round(plane * 255))


# --- PNG metadata bombs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "prefix"),
    [(b"zTXt", b"Comment\0\0"), (b"iTXt", b"Comment\0\x01\x00\x00\x00"), (b"iCCP", b"icc\0\0")],
    ids=["ztxt", "itxt", "iccp"],
)
def test_png_metadata_bomb_is_refused_with_its_own_code(kind: bytes, prefix: bytes) -> None:
    error = _error(png_with_chunk(png_bytes(FILM), kind, prefix + zlib.compress(bytes(8 << 20), 9)))
    assert (error.code, error.status) == ("decompressed_too_large", 422)


def test_png_with_small_compressed_text_is_accepted() -> None:
    """Control: a modest zTXt comment is ordinary metadata."""
    data = png_with_chunk(png_bytes(FILM), b"zTXt", b"Comment\0\0" + zlib.compress(b"on the ward" * 100))
    assert decode_image(data).pixels.shape == FILM.shape
