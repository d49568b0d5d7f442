"""Detect the upload's format from its bytes; the file name and Content-Type are never trusted."""

import struct
from enum import StrEnum

from service.contract.errors import InputError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
DICOM_MAGIC = b"DICM"
DICOM_MAGIC_OFFSET = 128  # after the 128-byte preamble (PS3.10 section 7.1)
# Value representations whose explicit-VR header has a 4-byte length (PS3.5 table 7.1-1).
LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
VRS = LONG_VRS | frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN", b"SH"}
    | {b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
)
# First groups a raw dataset (no preamble) plausibly starts with: its file meta (0002), or the
# identifying group 0008 (Specific Character Set, Image Type, SOP Class UID...).
_RAW_FIRST_GROUPS = (0x0002, 0x0008)
_RAW_FIRST_ELEMENT_MAX = 0x1000


class SourceFormat(StrEnum):
    PNG = "png"
    JPEG = "jpeg"
    DICOM = "dicom"
    # Never sniffed from an upload: a pixel array handed to ``decode_array`` (a MedMNIST .npz row).
    ARRAY = "array"


def is_part10(data: bytes) -> bool:
    return data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + len(DICOM_MAGIC)] == DICOM_MAGIC


def is_raw_dataset(data: bytes) -> bool:
    """A DICOM dataset without preamble and 'DICM', as older modalities and archives write them:
    a plausible first element of group 0002 or 0008 (little endian), explicit or implicit VR."""
    if len(data) < 8:
        return False
    group, element = struct.unpack_from("<HH", data)
    if group not in _RAW_FIRST_GROUPS or element > _RAW_FIRST_ELEMENT_MAX:
        return False
    if data[4:6] in VRS:
        return True
    # Implicit VR: a 4-byte length that fits in the file. The file meta group is always explicit.
    length: int = struct.unpack_from("<I", data, 4)[0]
    return group == 0x0008 and length <= len(data) - 8


def sniff_format(data: bytes) -> SourceFormat:
    if not data:
        raise InputError("empty_file", "The uploaded file is empty.")
    if data.startswith(PNG_MAGIC):
        return SourceFormat.PNG
    if data.startswith(JPEG_MAGIC):
        return SourceFormat.JPEG
    if is_part10(data) or is_raw_dataset(data):
        return SourceFormat.DICOM
    raise InputError(
        "unsupported_format",
        "The file is not a PNG, JPEG or DICOM image (Part 10 with 'DICM' at byte 128, or a raw "
        "little-endian dataset starting at group 0002 or 0008).",
        status=415,
    )
