"""DICOM decoding: transfer syntaxes, photometric, LUTs, BitsStored, refusals and de-identification."""

import copy
import dataclasses
import logging

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from service.contract import (
    DecodedImage,
    DecodeLimits,
    InputError,
    SourceFormat,
    decode_image,
    to_model_input,
)
from tests.factories import (
    FAKE_PHI_FRAGMENTS,
    chest_like,
    dicom_bytes,
    dicom_dataset,
    dicom_element_offset,
    encapsulated_dicom_bytes,
    png_bytes,
    rle_frame,
)

PLANE = chest_like(96, 80, seed=5)
SIZE = (64, 64)  # model input size used throughout: resizing is part of what must agree
PIXEL_DATA_TAG = 0x7FE00010
PATIENT_NAME_TAG = 0x00100010
ROWS_TAG = 0x00280010


def _decode(data: bytes, limits: DecodeLimits | None = None) -> DecodedImage:
    decoded = decode_image(data, limits)
    assert decoded.source_format is SourceFormat.DICOM
    assert decoded.dicom is not None
    assert decoded.pixels.dtype == np.float32
    return decoded


def _model_input(data: bytes) -> npt.NDArray[np.float32]:
    return to_model_input(_decode(data), *SIZE)


def _error(data: bytes, limits: DecodeLimits | None = None) -> InputError:
    with pytest.raises(InputError) as caught:
        decode_image(data, limits)
    _assert_no_phi(str(caught.value), caught.value.detail, repr(caught.value))
    return caught.value


def _assert_no_phi(*texts: str) -> None:
    for text in texts:
        for fragment in FAKE_PHI_FRAGMENTS:
            assert fragment.lower() not in text.lower(), f"{fragment!r} leaked into {text!r}"


# --- transfer syntaxes -------------------------------------------------------------------------


@pytest.mark.parametrize("bits_stored", [8, 12, 16])
@pytest.mark.parametrize(
    "transfer_syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless], ids=["rle", "j2k", "jpegls"]
)
def test_lossless_syntaxes_decode_exactly_like_uncompressed(transfer_syntax: UID, bits_stored: int) -> None:
    dataset = dicom_dataset(PLANE, bits_stored=bits_stored, bits_allocated=8 if bits_stored == 8 else 16)
    reference = _decode(dicom_bytes(dataset))
    compressed = _decode(dicom_bytes(dataset, transfer_syntax=transfer_syntax))
    assert compressed.dicom is not None
    assert compressed.dicom.transfer_syntax_uid == transfer_syntax
    assert compressed.dicom.bits_stored == bits_stored
    np.testing.assert_array_equal(compressed.pixels, reference.pixels)
    np.testing.assert_allclose(
        to_model_input(compressed, *SIZE), to_model_input(reference, *SIZE), rtol=0, atol=1e-6
    )


def test_uncompressed_pixels_are_the_stored_values() -> None:
    decoded = _decode(dicom_bytes(dicom_dataset(PLANE, bits_stored=12)))
    assert decoded.dicom is not None
    assert decoded.dicom.transfer_syntax_uid == ExplicitVRLittleEndian
    np.testing.assert_array_equal(decoded.pixels, np.round(PLANE * 4095))


def test_jpeg_baseline_is_close_to_the_8bit_reference() -> None:
    """Quality-95 baseline JPEG of this noisy film moves pixels by a few grey levels (< ~3/255 on
    average, ~10/255 at worst); the stretch divides by the 0.5-99.5 percentile span (~0.7 of full
    scale), giving ~0.015 per pixel before the bilinear resize averages neighbours. 0.03 / 0.006
    leave margin for other libjpeg builds yet are an order of magnitude below what a wrong decode
    (inverted, wrong bit depth, YBR misread, shifted rows) produces."""
    dataset = dicom_dataset(PLANE, bits_stored=8, bits_allocated=8)
    reference = _model_input(dicom_bytes(dataset))
    decoded = _decode(dicom_bytes(dataset, transfer_syntax=JPEGBaseline8Bit))
    assert decoded.dicom is not None
    assert decoded.dicom.transfer_syntax_uid == JPEGBaseline8Bit
    difference = np.abs(to_model_input(decoded, *SIZE) - reference)
    assert float(difference.max()) < 0.03
    assert float(difference.mean()) < 0.006


def test_16bit_dicom_and_16bit_png_of_one_film_give_the_same_model_input() -> None:
    """Both raster and DICOM paths store round(plane * 65535): the contract must not care which."""
    from_dicom = _model_input(dicom_bytes(dicom_dataset(PLANE, bits_stored=16)))
    from_png = to_model_input(decode_image(png_bytes(PLANE, bits=16)), *SIZE)
    np.testing.assert_allclose(from_dicom, from_png, rtol=0, atol=1e-6)


# --- photometric, LUTs, BitsStored -------------------------------------------------------------


@pytest.mark.parametrize("bits_stored", [8, 12, 16])
def test_monochrome1_and_monochrome2_of_one_film_give_the_same_model_input(bits_stored: int) -> None:
    mono2 = _decode(dicom_bytes(dicom_dataset(PLANE, bits_stored=bits_stored)))
    mono1 = _decode(dicom_bytes(dicom_dataset(PLANE, bits_stored=bits_stored, photometric="MONOCHROME1")))
    assert mono1.dicom is not None
    assert mono1.dicom.photometric_interpretation == "MONOCHROME1"
    # Brighter stays brighter: the decoded MONOCHROME1 plane is increasing in the displayed film.
    assert np.corrcoef(mono1.pixels.ravel(), PLANE.ravel())[0, 1] > 0.99
    np.testing.assert_allclose(to_model_input(mono1, *SIZE), to_model_input(mono2, *SIZE), rtol=0, atol=1e-5)


def test_monochrome1_not_inverted_would_be_caught() -> None:
    """Control: the inverse film really does give a different model input, so the test above has teeth."""
    upright = _model_input(dicom_bytes(dicom_dataset(PLANE)))
    inverted = _model_input(dicom_bytes(dicom_dataset(1.0 - PLANE)))
    assert float(np.abs(upright - inverted).mean()) > 0.2


@pytest.mark.parametrize(("slope", "intercept"), [(1.0, -1024.0), (2.5, 0.0), (0.25, 100.0), (3.0, -7000.0)])
def test_rescale_is_applied_and_does_not_change_the_model_input(slope: float, intercept: float) -> None:
    plain = _decode(dicom_bytes(dicom_dataset(PLANE)))
    rescaled = _decode(dicom_bytes(dicom_dataset(PLANE, rescale=(slope, intercept))))
    np.testing.assert_allclose(rescaled.pixels, plain.pixels * slope + intercept, rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(
        to_model_input(rescaled, *SIZE), to_model_input(plain, *SIZE), rtol=0, atol=1e-5
    )


@pytest.mark.parametrize("rescale", [None, (2.0, -1000.0)], ids=["stored-units", "rescaled-units"])
def test_voi_window_is_applied(rescale: tuple[float, float] | None) -> None:
    """A narrow window saturates everything outside it. After the stretch, whose percentiles then sit
    on the window's output extremes, the model input must be exactly the DICOM linear window
    ((x - (c - 0.5)) / (w - 1) + 0.5, clipped to [0, 1]) of the rescaled values."""
    slope, intercept = rescale or (1.0, 0.0)
    values = np.round(PLANE * 4095) * slope + intercept  # what the modality LUT produces
    center = float(np.median(values))
    width = float(np.percentile(values, 70) - np.percentile(values, 30))
    windowed = _decode(dicom_bytes(dicom_dataset(PLANE, rescale=rescale, window=(center, width))))
    height, columns = PLANE.shape
    result = to_model_input(windowed, height, columns)[0]  # native size: no resampling blur

    expected = np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-5)
    below, above = values < center - width / 2 - 1, values > center + width / 2 + 1
    assert below.mean() > 0.2 and above.mean() > 0.2  # the window really clips both ends
    assert np.all(result[below] == 0.0)
    assert np.all(result[above] == 1.0)

    unwindowed = to_model_input(_decode(dicom_bytes(dicom_dataset(PLANE, rescale=rescale))), height, columns)
    assert float(np.abs(unwindowed[0] - result).max()) > 0.2
    assert np.count_nonzero(unwindowed[0] == 0.0) < below.sum() / 4


def test_window_outside_the_data_gives_a_flat_image_not_nan() -> None:
    windowed = _decode(dicom_bytes(dicom_dataset(PLANE, window=(100_000.0, 10.0))))
    result = to_model_input(windowed, *SIZE)
    assert np.all(np.isfinite(result))
    assert np.all(result == 0.0)


def _respelled(dataset: Dataset, tag: int, old: bytes, new: bytes) -> bytes:
    """Serialise, then overwrite the bytes of one element's value (same length): pydicom would refuse
    to write a non-numeric DS, and the contract reads with validation off."""
    assert len(old) == len(new)
    data = dicom_bytes(dataset)
    start = data.index(old, dicom_element_offset(data, tag))
    return data[:start] + new + data[start + len(old) :]


def _invalid_lut_files() -> dict[str, bytes]:
    bogus_function = dicom_dataset(PLANE, window=(2000.0, 500.0))
    bogus_function.VOILUTFunction = "BOGUS"
    return {
        "window-width-0": dicom_bytes(dicom_dataset(PLANE, window=(2000.0, 0.0))),
        "window-width-negative": dicom_bytes(dicom_dataset(PLANE, window=(2000.0, -5.0))),
        "unknown-voi-lut-function": dicom_bytes(bogus_function),
        "non-numeric-slope": _respelled(
            dicom_dataset(PLANE, rescale=(2.0, 0.0)), 0x00281053, b"2.0 ", b"abc "
        ),
        "non-numeric-center": _respelled(
            dicom_dataset(PLANE, window=(2000.0, 500.0)), 0x00281050, b"2000.0", b"x000.0"
        ),
        "non-numeric-width": _respelled(
            dicom_dataset(PLANE, window=(2000.0, 500.0)), 0x00281051, b"500.0 ", b"5x0.0 "
        ),
        "nan-width": _respelled(
            dicom_dataset(PLANE, window=(2000.0, 500.0)), 0x00281051, b"500.0 ", b"nan   "
        ),
        "infinite-slope": _respelled(dicom_dataset(PLANE, rescale=(2.0, 0.0)), 0x00281053, b"2.0 ", b"inf "),
    }


@pytest.mark.parametrize("name", sorted(_invalid_lut_files()))
def test_invalid_rescale_or_window_is_corrupt_not_a_crash(name: str) -> None:
    """Window Width 0 does occur in the wild; before the fix these escaped as ValueError/TypeError."""
    error = _error(_invalid_lut_files()[name])
    assert (error.code, error.status) == ("corrupt_dicom", 400)


def test_rgb_dicom_of_a_grey_film_gives_its_grey_levels() -> None:
    dataset = dicom_dataset(PLANE, bits_stored=8, bits_allocated=8)
    grey = np.frombuffer(dataset.PixelData, dtype=np.uint8).reshape(PLANE.shape)
    dataset.SamplesPerPixel = 3
    dataset.PhotometricInterpretation = "RGB"
    dataset.PlanarConfiguration = 0
    dataset.PixelData = np.repeat(grey[..., np.newaxis], 3, axis=2).tobytes()
    decoded = _decode(dicom_bytes(dataset))
    assert decoded.pixels.shape == PLANE.shape
    np.testing.assert_allclose(decoded.pixels, grey, atol=1e-3)


def _with_high_bit_junk(dataset: Dataset, bits_stored: int, seed: int) -> Dataset:
    stored = np.frombuffer(dataset.PixelData, dtype=np.uint16)
    junk = np.random.default_rng(seed).integers(1, 1 << (16 - bits_stored), stored.shape, dtype=np.uint16)
    dirty = stored | (junk << bits_stored).astype(np.uint16)
    assert np.all(dirty != stored)
    dataset.PixelData = dirty.astype("<u2").tobytes()
    return dataset


@pytest.mark.parametrize("bits_stored", [10, 12, 14])
def test_bits_above_bits_stored_are_ignored(bits_stored: int) -> None:
    clean = _decode(dicom_bytes(dicom_dataset(PLANE, bits_stored=bits_stored)))
    dataset = dicom_dataset(PLANE, bits_stored=bits_stored)
    dataset = _with_high_bit_junk(dataset, bits_stored, seed=bits_stored)
    dirty = _decode(dicom_bytes(dataset))
    np.testing.assert_array_equal(dirty.pixels, clean.pixels)
    assert float(dirty.pixels.max()) < (1 << bits_stored)


def test_signed_pixels_are_sign_extended_from_bits_stored() -> None:
    """PixelRepresentation 1, 12 bits stored, junk above bit 11: values must come back as the
    12-bit two's-complement numbers, and give the same model input as the unsigned film."""
    dataset = dicom_dataset(PLANE, bits_stored=12)
    signed = np.round(PLANE * 4095).astype(np.int32) - 2048
    low12 = (signed & 0x0FFF).astype(np.uint16)
    junk = np.random.default_rng(1).integers(0, 16, low12.shape, dtype=np.uint16) << 12
    dataset.PixelRepresentation = 1
    dataset.PixelData = (low12 | junk).astype("<u2").tobytes()
    decoded = _decode(dicom_bytes(dataset))
    np.testing.assert_array_equal(decoded.pixels, signed)
    reference = _model_input(dicom_bytes(dicom_dataset(PLANE, bits_stored=12)))
    np.testing.assert_allclose(to_model_input(decoded, *SIZE), reference, rtol=0, atol=1e-5)


# --- what is accepted and refused ---------------------------------------------------------------


@pytest.mark.parametrize("modality", ["CR", "DX", "DR", "RG", "PX", "dx", None])
def test_radiograph_modalities_and_missing_modality_are_accepted(modality: str | None) -> None:
    decoded = _decode(dicom_bytes(dicom_dataset(PLANE, modality=modality)))
    assert decoded.dicom is not None
    assert decoded.dicom.modality == (modality.upper() if modality else None)


@pytest.mark.parametrize("modality", ["CT", "MR", "US", "NM", "MG"])
def test_other_modalities_are_refused(modality: str) -> None:
    error = _error(dicom_bytes(dicom_dataset(PLANE, modality=modality)))
    assert (error.code, error.status) == ("unsupported_modality", 422)


@pytest.mark.parametrize("transfer_syntax", [None, RLELossless], ids=["native", "rle"])
def test_multi_frame_is_refused(transfer_syntax: UID | None) -> None:
    error = _error(dicom_bytes(dicom_dataset(PLANE, frames=3), transfer_syntax=transfer_syntax))
    assert (error.code, error.status) == ("multi_frame", 422)


def test_no_pixel_data_is_refused() -> None:
    dataset = dicom_dataset(PLANE)
    del dataset.PixelData
    error = _error(dicom_bytes(dataset))
    assert (error.code, error.status) == ("no_pixel_data", 422)


def test_unsupported_photometric_is_refused() -> None:
    dataset = dicom_dataset(PLANE)
    dataset.PhotometricInterpretation = "PALETTE COLOR"
    error = _error(dicom_bytes(dataset))
    assert (error.code, error.status) == ("unsupported_photometric", 422)


def test_header_pixel_bomb_is_refused_before_decoding() -> None:
    """Rows x Columns of 30000 x 30000 with a few kilobytes of data: had the decoder run first,
    this would fail as corrupt pixel data, so the code proves the budget is checked first."""
    dataset = dicom_dataset(PLANE)
    dataset.Rows = dataset.Columns = 30_000
    error = _error(dicom_bytes(dataset))
    assert (error.code, error.status) == ("too_many_pixels", 422)
    limited = _error(dicom_bytes(dicom_dataset(PLANE)), DecodeLimits(max_pixels=PLANE.size - 1))
    assert limited.code == "too_many_pixels"


def test_missing_image_attributes_are_corrupt() -> None:
    dataset = dicom_dataset(PLANE)
    del dataset.Rows
    error = _error(dicom_bytes(dataset))
    assert (error.code, error.status) == ("corrupt_dicom", 400)


def test_garbage_after_the_preamble_is_corrupt() -> None:
    rng = np.random.default_rng(11)
    for size in (0, 7, 64, 500):
        data = bytes(128) + b"DICM" + rng.bytes(size)
        error = _error(data)
        assert (error.code, error.status) == ("corrupt_dicom", 400), size


def _cut_points(data: bytes) -> dict[str, int]:
    pixel_data = dicom_element_offset(data, PIXEL_DATA_TAG)
    return {
        "inside-file-meta": 150,
        "inside-patient-name": dicom_element_offset(data, PATIENT_NAME_TAG) + 8 + 3,
        "inside-pixel-data": pixel_data + 12 + (len(data) - pixel_data) // 2,
        "last-byte-missing": len(data) - 1,
    }


@pytest.mark.parametrize(
    "where", ["inside-file-meta", "inside-patient-name", "inside-pixel-data", "last-byte-missing"]
)
def test_truncated_uncompressed_dicom_is_corrupt(where: str) -> None:
    data = dicom_bytes(dicom_dataset(PLANE))
    cut = _cut_points(data)[where]
    error = _error(data[:cut])
    assert (error.code, error.status) == ("corrupt_dicom", 400)


@pytest.mark.parametrize(
    "transfer_syntax",
    [RLELossless, JPEG2000Lossless, JPEGLSLossless, JPEGBaseline8Bit],
    ids=["rle", "j2k", "jpegls", "jpeg"],
)
def test_truncated_compressed_dicom_is_refused(
    transfer_syntax: UID, recwarn: pytest.WarningsRecorder
) -> None:
    """Cut in the middle of the encapsulated pixel data. pydicom drops (with a warning) an
    undefined-length element it cannot finish, so today the code is ``no_pixel_data`` (422) rather
    than ``corrupt_dicom``; the contract only promises a 4xx, and the warning must not carry PHI."""
    data = dicom_bytes(dicom_dataset(PLANE, bits_stored=8, bits_allocated=8), transfer_syntax=transfer_syntax)
    pixel_data = dicom_element_offset(data, PIXEL_DATA_TAG)
    error = _error(data[: pixel_data + (len(data) - pixel_data) // 2])
    assert 400 <= error.status < 500
    _assert_no_phi(*(str(warning.message) for warning in recwarn))


@pytest.mark.parametrize("missing", [2, 100, 1000])  # even: pydicom pads an odd value with a zero byte
def test_pixel_data_shorter_than_rows_times_columns_is_refused(missing: int) -> None:
    dataset = dicom_dataset(PLANE)
    dataset.PixelData = dataset.PixelData[: len(dataset.PixelData) - missing]
    error = _error(dicom_bytes(dataset))
    assert (error.code, error.status) == ("corrupt_dicom", 400)


def test_rows_larger_than_the_pixel_data_is_refused() -> None:
    dataset = dicom_dataset(PLANE)
    dataset.Rows = PLANE.shape[0] + 1
    error = _error(dicom_bytes(dataset))
    assert 400 <= error.status < 500


def test_empty_pixel_data_is_refused() -> None:
    dataset = dicom_dataset(PLANE)
    dataset.PixelData = b""
    error = _error(dicom_bytes(dataset))
    assert 400 <= error.status < 500


def test_hand_written_rle_frame_decodes() -> None:
    """Control for the hostile RLE test below: the hand-made frame format is right."""
    plane = chest_like(16, 16, seed=1)
    stored = np.round(plane * 255).astype(np.uint8).tobytes()
    literal_runs = b"".join(bytes([127]) + stored[start : start + 128] for start in range(0, 256, 128))
    data = encapsulated_dicom_bytes(
        dicom_dataset(plane, bits_stored=8, bits_allocated=8), [rle_frame([literal_runs])], RLELossless
    )
    np.testing.assert_array_equal(_decode(data).pixels, np.round(plane * 255))


def _patched(data: bytes, offset: int, replacement: bytes) -> bytes:
    return data[:offset] + replacement + data[offset + len(replacement) :]


def _hostile_files() -> dict[str, bytes]:
    """Inputs that once escaped as non-InputError exceptions (a 500 instead of a 4xx)."""
    data = dicom_bytes(dicom_dataset(chest_like(16, 16)))
    pixel_data, rows = dicom_element_offset(data, PIXEL_DATA_TAG), dicom_element_offset(data, ROWS_TAG)
    overshoot = bytes([0x81, 7]) * 3  # three 128-byte runs into a 256-byte segment
    return {
        # struct.error while reading the 4-byte length of Pixel Data
        "cut-inside-an-element-length": data[: pixel_data + 10],
        # BytesLengthException: the file meta group length (UL) declared 3 bytes long
        "odd-length-meta-group-length": _patched(data, 132 + 6, b"\x03\x00"),
        # BytesLengthException: Rows re-labelled UL while holding 2 bytes
        "rows-with-a-wrong-vr": _patched(data, rows + 4, b"UL"),
        # NotImplementedError: an unknown VR on an attribute the contract reads
        "rows-with-an-unknown-vr": _patched(data, rows + 4, b"ZZ"),
        # pylibjpeg-rle (Rust) panics: PanicException derives from BaseException, not Exception
        "rle-segment-overshoot": encapsulated_dicom_bytes(
            dicom_dataset(chest_like(16, 16), bits_stored=8), [rle_frame([overshoot, overshoot])], RLELossless
        ),
    }


@pytest.mark.parametrize("name", sorted(_hostile_files()))
def test_hostile_bytes_are_refused_as_corrupt_not_crashes(name: str) -> None:
    error = _error(_hostile_files()[name])
    assert (error.code, error.status) == ("corrupt_dicom", 400)


@pytest.mark.parametrize(
    "transfer_syntax",
    [None, RLELossless, JPEG2000Lossless, JPEGLSLossless, JPEGBaseline8Bit],
    ids=["native", "rle", "j2k", "jpegls", "jpeg"],
)
def test_mutated_files_decode_or_fail_with_a_4xx(
    transfer_syntax: UID | None, recwarn: pytest.WarningsRecorder
) -> None:
    """A small seeded fuzz: byte flips, cuts and overwrites anywhere after the preamble. Each file
    either decodes to a finite plane or raises InputError with a 4xx; nothing else may escape."""
    plane = chest_like(40, 32, seed=4)  # J2K encoding needs >= 32 pixels a side
    data = dicom_bytes(dicom_dataset(plane, bits_stored=8, bits_allocated=8), transfer_syntax=transfer_syntax)
    rng = np.random.default_rng(1234)
    for attempt in range(60):
        mutated = bytearray(data)
        if attempt % 3 == 0:
            for _ in range(3):
                mutated[int(rng.integers(132, len(data)))] = int(rng.integers(0, 256))
        elif attempt % 3 == 1:
            del mutated[int(rng.integers(132, len(data))) :]
        else:
            start = int(rng.integers(132, min(len(data), 900)))
            mutated[start : start + 4] = rng.bytes(4)
        try:
            decoded = decode_image(bytes(mutated))
        except InputError as error:
            assert 400 <= error.status < 500
            _assert_no_phi(str(error))
        else:
            assert np.all(np.isfinite(decoded.pixels))
    _assert_no_phi(*(str(warning.message) for warning in recwarn))


# --- de-identification --------------------------------------------------------------------------


def test_dicom_info_keeps_the_uids_and_no_identity() -> None:
    dataset = dicom_dataset(PLANE, modality="CR")
    decoded = _decode(dicom_bytes(dataset))
    info = decoded.dicom
    assert info is not None
    assert info.study_instance_uid == dataset.StudyInstanceUID
    assert info.sop_instance_uid == dataset.SOPInstanceUID
    assert info.modality == "CR"
    assert info.photometric_interpretation == "MONOCHROME2"
    assert info.bits_stored == 12
    assert {field.name for field in dataclasses.fields(info)} == {
        "study_instance_uid",
        "sop_instance_uid",
        "modality",
        "photometric_interpretation",
        "transfer_syntax_uid",
        "bits_stored",
        "warnings",  # codes only (invalid_study_instance_uid...), never a value from the file
    }  # a new field must be reviewed for PHI before it is added here
    _assert_no_phi(*(str(value) for value in dataclasses.asdict(info).values()), repr(info), repr(decoded))


def test_missing_uids_are_none() -> None:
    dataset = dicom_dataset(PLANE)
    del dataset.StudyInstanceUID
    del dataset.SOPInstanceUID
    info = _decode(dicom_bytes(dataset)).dicom
    assert info is not None
    assert (info.study_instance_uid, info.sop_instance_uid) == (None, None)


def _malformed_identity_dataset() -> Dataset:
    """Patient attributes that break their VR rules: pydicom's validation would quote them."""
    dataset = dicom_dataset(PLANE)
    dataset.PatientName = "^".join([*FAKE_PHI_FRAGMENTS[:3]] * 10) + "\\x"  # > 64 chars per group
    dataset.PatientID = FAKE_PHI_FRAGMENTS[3] * 5  # LO > 64 chars
    dataset.PatientBirthDate = FAKE_PHI_FRAGMENTS[4] + "XX"  # not a DA
    return dataset


def test_decoding_logs_and_warns_nothing_identifying(
    caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder
) -> None:
    data = dicom_bytes(_malformed_identity_dataset())
    recwarn.clear()  # only what decoding emits counts, not what building the file did
    caplog.set_level(logging.DEBUG)
    _decode(data)
    with pytest.raises(InputError):
        decode_image(data[:-5])
    _assert_no_phi(caplog.text, *(str(warning.message) for warning in recwarn))


def test_errors_for_an_identified_file_never_quote_the_identity() -> None:
    """Every refusal path for a file carrying the fake identity; ``_error`` checks each message."""
    base = _malformed_identity_dataset()
    variants: list[bytes] = []
    for change in ("Modality", "NumberOfFrames", "PhotometricInterpretation", "PixelData", "Rows"):
        dataset = copy.deepcopy(base)
        if change == "Modality":
            dataset.Modality = "CT"
        elif change == "NumberOfFrames":
            dataset.NumberOfFrames = 2
        elif change == "PhotometricInterpretation":
            dataset.PhotometricInterpretation = "HSV"
        elif change == "PixelData":
            dataset.PixelData = dataset.PixelData[:-10]
        else:
            dataset.Rows = 40_000
            dataset.Columns = 40_000
        variants.append(dicom_bytes(dataset))
    variants.append(dicom_bytes(base)[:-3])
    codes = {_error(data).code for data in variants}
    assert codes == {
        "unsupported_modality",
        "multi_frame",
        "unsupported_photometric",
        "corrupt_dicom",
        "too_many_pixels",
    }


def test_the_fake_identity_is_really_in_the_test_files() -> None:
    """Control for the leak tests: the identity is present in the bytes pydicom reads."""
    dataset = pydicom.dcmread(pydicom.filebase.DicomBytesIO(dicom_bytes(dicom_dataset(PLANE))))
    assert str(dataset.PatientID) == FAKE_PHI_FRAGMENTS[3]
    assert FAKE_PHI_FRAGMENTS[0] in str(dataset.PatientName)
