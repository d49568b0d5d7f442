"""What a decoder returns: a grayscale plane plus the little metadata that is safe to keep."""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.contract.errors import InputError
from service.contract.sniff import SourceFormat

DEFAULT_MAX_PIXELS = 50_000_000  # a 7k x 7k film; far above any chest radiograph detector
# A 7071 x 7071 film at 16 bits (100 MB) fits; the same size in 8-bit RGB (150 MB) or RGBA (200 MB)
# does not: what a decode costs is its bytes, and a chest film needs one grey channel.
DEFAULT_MAX_DECODED_BYTES = 128 * 1024 * 1024
# DICOM metadata (service.contract.dicom_header). Chest films nest sequences 3-4 deep (request
# attributes > procedure codes), carry a few hundred elements and tens of KB of non-pixel values;
# an embedded overlay plane or private thumbnail is a few MB.
DEFAULT_MAX_DICOM_DEPTH = 12
DEFAULT_MAX_DICOM_ELEMENTS = 10_000
DEFAULT_MAX_DICOM_HEADER_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class DecodeLimits:
    """Caps applied before any pixel is decompressed or any DICOM value read, so a hostile header
    cannot exhaust memory."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES
    max_dicom_depth: int = DEFAULT_MAX_DICOM_DEPTH
    max_dicom_elements: int = DEFAULT_MAX_DICOM_ELEMENTS
    max_dicom_header_bytes: int = DEFAULT_MAX_DICOM_HEADER_BYTES


@dataclass(frozen=True)
class DicomInfo:
    """Non-identifying DICOM attributes. Nothing that names or dates a patient is ever copied here."""

    study_instance_uid: str | None  # None when absent or not a valid UID (see ``warnings``)
    sop_instance_uid: str | None
    modality: str | None
    photometric_interpretation: str
    transfer_syntax_uid: str
    bits_stored: int
    warnings: tuple[str, ...] = ()  # codes, e.g. "invalid_study_instance_uid"


@dataclass(frozen=True)
class DecodedImage:
    """A single-plane image where larger means brighter (MONOCHROME2 convention), float32, any scale.

    The scale is left as decoded (8-bit, 12-bit, Hounsfield-like...) because the preprocessing step
    normalises by percentiles, which is invariant to any increasing affine map of intensities.
    """

    pixels: npt.NDArray[np.float32]
    source_format: SourceFormat
    dicom: DicomInfo | None = None

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def check_pixel_budget(width: int, height: int, limits: DecodeLimits, bytes_per_pixel: float = 1) -> None:
    """Refuse before decoding: too many pixels, or more decoded bytes (pixels x channels x bytes per
    sample, as the decoder will hold them) than ``max_decoded_bytes``."""
    if width <= 0 or height <= 0:
        raise InputError("empty_image", f"The image has no pixels ({width}x{height}).")
    if width * height > limits.max_pixels:
        raise InputError(
            "too_many_pixels",
            f"The image is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}.",
            status=422,
        )
    decoded = int(width * height * bytes_per_pixel)
    if decoded > limits.max_decoded_bytes:
        raise InputError(
            "decoded_too_large",
            f"The {width}x{height} image decodes to {decoded} bytes ({bytes_per_pixel:g} per pixel); "
            f"the limit is {limits.max_decoded_bytes}. Send it as single-channel greyscale.",
            status=422,
        )
