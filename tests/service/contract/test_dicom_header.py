"""Bounded DICOM metadata and raw datasets (issue 15): refused or read before pydicom parses a byte."""

import io
import struct

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from service.contract import DecodeLimits, InputError, decode_image
from service.contract.dicom_header import check_header, dicom_layout
from tests.factories import (
    chest_like,
    deflated_dicom_bytes,
    dicom_bytes,
    dicom_dataset,
    dicom_element_flood,
    dicom_element_offset,
    nested_patient_name_dicom,
    raw_dicom_dataset,
)

PLANE = chest_like(48, 40, seed=3)


def _error(data: bytes, limits: DecodeLimits | None = None) -> InputError:
    with pytest.raises(InputError) as caught:
        decode_image(data, limits)
    return caught.value


# --- limits -------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [13, 400, 1000])
def test_patient_name_nested_as_a_sequence_is_refused_as_too_deep(depth: int) -> None:
    error = _error(nested_patient_name_dicom(PLANE, depth))
    assert (error.code, error.status) == ("dicom_too_deep", 400)


def test_nesting_at_the_limit_is_read() -> None:
    """Depth 12 (the default limit) decodes; a custom limit of 11 refuses the same file."""
    data = nested_patient_name_dicom(PLANE, 12)
    assert decode_image(data).pixels.shape == PLANE.shape
    assert _error(data, DecodeLimits(max_dicom_depth=11)).code == "dicom_too_deep"


def test_undefined_length_nesting_is_counted_too() -> None:
    """Sequences and items of undefined length (delimiters instead of lengths), written by pydicom."""
    ds = dicom_dataset(PLANE)
    inner = Dataset()
    inner.CodeValue = "X"
    for _ in range(20):
        outer = Dataset()
        outer.ProcedureCodeSequence = Sequence([inner])
        inner = outer
    ds.RequestAttributesSequence = Sequence([inner])
    for element in _sequences(ds):
        element.is_undefined_length = True
        for item in element.value:
            item.is_undefined_length_sequence_item = True
    data = dicom_bytes(ds)
    assert b"\xfe\xff\xdd\xe0" in data  # a sequence delimiter: the lengths really are undefined
    assert _error(data).code == "dicom_too_deep"


def _sequences(ds: Dataset) -> list[pydicom.DataElement]:
    found = []
    for element in ds:
        if element.VR == "SQ":
            found.append(element)
            for item in element.value:
                found += _sequences(item)
    return found


def test_an_implicit_sequence_hidden_in_a_un_element_is_counted() -> None:
    """Explicit VR file, element of VR UN with undefined length: pydicom reads its value as an
    implicit VR sequence (PS3.5 6.2.2), so the nesting inside counts."""
    leaf = struct.pack("<HHI", 0x0008, 0x0100, 2) + b"X "
    element = leaf
    for _ in range(30):
        item = (
            struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + element + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
        )
        element = (
            struct.pack("<HHI", 0x0008, 0x1032, 0xFFFFFFFF) + item + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        )
    un = struct.pack("<HH2sHI", 0x0009, 0x1001, b"UN", 0, 0xFFFFFFFF) + element[8:]
    data = dicom_bytes(dicom_dataset(PLANE))
    at = dicom_element_offset(data, 0x00100010)
    creator = struct.pack("<HH2sH", 0x0009, 0x0010, b"LO", 4) + b"TEST"
    assert _error(data[:at] + creator + un + data[at:]).code == "dicom_too_deep"


def test_deflated_dataset_is_walked_inflated() -> None:
    ds = pydicom.dcmread(io.BytesIO(nested_patient_name_dicom(PLANE, 5)))
    # depth 5 reads; the limit set to 4 shows that the walk saw the nesting inside the deflate stream
    data = deflated_dicom_bytes(ds)
    assert decode_image(data).pixels.shape == PLANE.shape
    assert _error(data, DecodeLimits(max_dicom_depth=4)).code == "dicom_too_deep"


def test_element_flood_is_refused() -> None:
    data = dicom_element_flood(PLANE, 20_000)
    error = _error(data)
    assert (error.code, error.status) == ("dicom_too_many_elements", 400)
    assert decode_image(dicom_element_flood(PLANE, 100)).pixels.shape == PLANE.shape


def test_header_bytes_are_bounded_and_pixel_data_is_not_counted() -> None:
    ds = dicom_dataset(PLANE)
    ds.add_new(0x00091010, "LO", "BULK")  # private creator
    ds.add_new(0x00091001, "OB", bytes(64 * 1024))  # e.g. a vendor's embedded thumbnail
    data = dicom_bytes(ds)
    assert decode_image(data).pixels.shape == PLANE.shape
    error = _error(data, DecodeLimits(max_dicom_header_bytes=32 * 1024))
    assert (error.code, error.status) == ("dicom_header_too_large", 400)
    # The pixel data (48 x 40 x 2 bytes) is far above 1 KB and not counted.
    plain = dicom_bytes(dicom_dataset(PLANE))
    summary = check_header(plain, dicom_layout(plain), DecodeLimits())
    assert summary.value_bytes < 1024 < PLANE.size * 2


@pytest.mark.parametrize("cut", [300, 400, 1000])
def test_a_dicom_cut_short_is_corrupt(cut: int) -> None:
    """The README promised 400 corrupt_dicom for a cut file; cut after 300 bytes it was 422."""
    data = dicom_bytes(dicom_dataset(PLANE))[:cut]
    error = _error(data)
    assert (error.code, error.status) == ("corrupt_dicom", 400)


def test_limits_come_before_pydicom(monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk refuses the file before pydicom is asked to read anything."""

    def unreachable(*args: object, **kwargs: object) -> None:
        raise AssertionError("pydicom.dcmread was called")

    monkeypatch.setattr(pydicom, "dcmread", unreachable)
    assert _error(nested_patient_name_dicom(PLANE, 400)).code == "dicom_too_deep"


# --- raw datasets (no preamble, no file meta) -------------------------------------------------------


def _raw(ds: Dataset, *, implicit: bool) -> bytes:
    """``ds`` written by pydicom as a bare dataset: no preamble, no 'DICM', no file meta."""
    data = raw_dicom_dataset(ds, implicit=implicit)
    assert data[:2] == b"\x08\x00" and b"DICM" not in data[:200]
    return data


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit-vr", "explicit-vr"])
def test_raw_dataset_decodes_like_the_part10_file(implicit: bool) -> None:
    ds = dicom_dataset(PLANE)
    reference = decode_image(dicom_bytes(ds))
    decoded = decode_image(_raw(ds, implicit=implicit))
    np.testing.assert_array_equal(decoded.pixels, reference.pixels)
    assert decoded.dicom is not None and reference.dicom is not None
    assert decoded.dicom.sop_instance_uid == reference.dicom.sop_instance_uid
    expected = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    assert decoded.dicom.transfer_syntax_uid == expected


def test_file_meta_without_preamble_decodes() -> None:
    ds = dicom_dataset(PLANE)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    data = buffer.getvalue()
    assert data[:2] == b"\x02\x00"
    np.testing.assert_array_equal(decode_image(data).pixels, decode_image(dicom_bytes(ds)).pixels)


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit-vr", "explicit-vr"])
def test_raw_dataset_is_under_the_same_limits(implicit: bool) -> None:
    ds = dicom_dataset(PLANE)
    nested: Dataset = Dataset()
    nested.CodeValue = "X"
    for _ in range(40):
        outer = Dataset()
        outer.ProcedureCodeSequence = Sequence([nested])
        nested = outer
    ds.RequestAttributesSequence = Sequence([nested])
    data = _raw(ds, implicit=implicit)
    assert _error(data).code == "dicom_too_deep"
    cut = _raw(dicom_dataset(PLANE), implicit=implicit)[:300]
    assert _error(cut).code == "corrupt_dicom"


def test_raw_dataset_with_compressed_pixels_is_refused() -> None:
    """Nothing in a raw dataset says which codec its encapsulated pixel data uses."""
    ds = dicom_dataset(PLANE)
    ds.compress(RLELossless)
    error = _error(_raw(ds, implicit=False))
    assert (error.code, error.status) == ("unsupported_transfer_syntax", 422)


def test_raw_big_endian_dataset_is_not_taken_for_dicom() -> None:
    """Explicit VR big endian (retired) starts with 00 08: not sniffed, so 415 rather than a misread."""
    ds = dicom_dataset(PLANE, bits_allocated=8, bits_stored=8)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    data = _big_endian_raw(ds)
    assert data[:2] == b"\x00\x08"
    error = _error(data)
    assert (error.code, error.status) == ("unsupported_format", 415)


def _big_endian_raw(ds: Dataset) -> bytes:
    bare = Dataset()
    bare.update(ds)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, bare, implicit_vr=False, little_endian=False, enforce_file_format=False)
    return buffer.getvalue()
