"""Bytes in, grayscale plane out: the single decoding entry point."""

from service.contract.decoded import DecodedImage, DecodeLimits, DicomInfo
from service.contract.dicom import decode_dicom
from service.contract.raster import decode_raster
from service.contract.sniff import SourceFormat, sniff_format

__all__ = ["DecodeLimits", "DecodedImage", "DicomInfo", "SourceFormat", "decode_image"]


def decode_image(data: bytes, limits: DecodeLimits | None = None) -> DecodedImage:
    """Decode a PNG, JPEG or DICOM file, detected by its magic bytes, or raise ``InputError``."""
    limits = limits or DecodeLimits()
    source_format = sniff_format(data)
    if source_format is SourceFormat.DICOM:
        return decode_dicom(data, limits)
    return decode_raster(data, source_format, limits)
