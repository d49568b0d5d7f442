"""Detect the upload's format from its bytes; the file name and Content-Type are never trusted."""

from enum import StrEnum

from service.contract.errors import InputError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
DICOM_MAGIC = b"DICM"
DICOM_MAGIC_OFFSET = 128  # after the 128-byte preamble (PS3.10 section 7.1)


class SourceFormat(StrEnum):
    PNG = "png"
    JPEG = "jpeg"
    DICOM = "dicom"
    # Never sniffed from an upload: a pixel array handed to ``decode_array`` (a MedMNIST .npz row).
    ARRAY = "array"


def sniff_format(data: bytes) -> SourceFormat:
    if not data:
        raise InputError("empty_file", "The uploaded file is empty.")
    if data.startswith(PNG_MAGIC):
        return SourceFormat.PNG
    if data.startswith(JPEG_MAGIC):
        return SourceFormat.JPEG
    if data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + len(DICOM_MAGIC)] == DICOM_MAGIC:
        return SourceFormat.DICOM
    raise InputError(
        "unsupported_format",
        "The file is not a PNG, JPEG or DICOM (Part 10, with the 'DICM' marker at byte 128) image.",
        status=415,
    )
