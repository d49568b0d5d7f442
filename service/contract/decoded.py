"""What a decoder returns: a grayscale plane plus the little metadata that is safe to keep."""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.contract.errors import InputError
from service.contract.sniff import SourceFormat

DEFAULT_MAX_PIXELS = 50_000_000  # a 7k x 7k film; far above any chest radiograph detector


@dataclass(frozen=True)
class DecodeLimits:
    """Caps applied before any pixel is decompressed, so a hostile header cannot exhaust memory."""

    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class DicomInfo:
    """Non-identifying DICOM attributes. Nothing that names or dates a patient is ever copied here."""

    study_instance_uid: str | None
    sop_instance_uid: str | None
    modality: str | None
    photometric_interpretation: str
    transfer_syntax_uid: str
    bits_stored: int


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


def check_pixel_budget(width: int, height: int, limits: DecodeLimits) -> None:
    if width <= 0 or height <= 0:
        raise InputError("empty_image", f"The image has no pixels ({width}x{height}).")
    if width * height > limits.max_pixels:
        raise InputError(
            "too_many_pixels",
            f"The image is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}.",
            status=422,
        )
