"""Realistic hospital DICOM films built from ordinary chest films, to check that what a radiology
department sends passes the out-of-distribution gate.

A 224 px film is upscaled to detector size (2-3k px, with a little quantum noise so it is not
unnaturally smooth), quantised to 12-16 bits and stored as a hospital modality would: CR or DX,
MONOCHROME1 (inverted, as many CR readers write) or MONOCHROME2, a rescale and a VOI window, JPEG
2000 or JPEG-LS lossless, or uncompressed. The identity in the header is invented.
"""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
)

from training.data.chest_dicom import chest_dataset, part10_bytes


@dataclass(frozen=True)
class DicomFilm:
    """How one hospital film is stored."""

    modality: str  # "CR" or "DX"
    photometric: str  # "MONOCHROME1" or "MONOCHROME2"
    bits_stored: int  # 12-16
    side: int  # rows; columns are 5/6 of it, as a portrait cassette
    transfer_syntax: UID

    @property
    def label(self) -> str:
        syntax = self.transfer_syntax.name
        return f"{self.modality} {self.photometric} {self.bits_stored}-bit {self.side}px {syntax}"


# The first three cover both photometric interpretations, 12/14/16 bits, JPEG 2000, JPEG-LS and
# native pixels at 2-2.5k px; the last two are the largest and slowest to build.
HOSPITAL_FILMS = (
    DicomFilm("CR", "MONOCHROME1", 12, 2500, JPEG2000Lossless),
    DicomFilm("DX", "MONOCHROME2", 16, 2200, JPEGLSLossless),
    DicomFilm("CR", "MONOCHROME2", 14, 2048, ExplicitVRLittleEndian),
    DicomFilm("DX", "MONOCHROME1", 16, 2800, JPEG2000Lossless),
    DicomFilm("DX", "MONOCHROME2", 14, 3000, JPEGLSLossless),
)


def detector_plane(plane: npt.NDArray[np.floating], rows: int, seed: int = 0) -> npt.NDArray[np.float64]:
    """``plane`` in [0, 1] upscaled (bicubic) to ``rows`` x 5/6 ``rows``, with faint noise."""
    columns = rows * 5 // 6
    image = Image.fromarray(np.asarray(plane, dtype=np.float32)).resize(
        (columns, rows), Image.Resampling.BICUBIC
    )
    large = np.asarray(image, dtype=np.float64)
    large += np.random.default_rng(seed).normal(0.0, 0.004, large.shape)
    return np.clip(large, 0.0, 1.0)


def hospital_dicom(plane: npt.NDArray[np.floating], film: DicomFilm, seed: int = 0) -> bytes:
    """A Part-10 file of ``plane`` (in [0, 1], brighter = denser) stored as ``film`` says."""
    large = detector_plane(plane, film.side, seed)
    maximum = (1 << film.bits_stored) - 1
    sop_class = (
        ComputedRadiographyImageStorage if film.modality == "CR" else DigitalXRayImageStorageForPresentation
    )
    header = {
        "PatientName": "Synthetic^Film",
        "PatientID": "SYNTH-0000",
        "PixelSpacing": [0.139, 0.139],
        "RescaleSlope": 1,
        "RescaleIntercept": 0,
        "RescaleType": "US",
        # A VOI window over the stored film's range, as the modality would set it for display.
        "WindowCenter": round(maximum * 0.5),
        "WindowWidth": round(maximum * 0.9),
    }
    # Real detectors leave headroom: the film occupies the middle of the stored range.
    ds = chest_dataset(
        0.08 + 0.84 * large,
        bits_stored=film.bits_stored,
        photometric=film.photometric,
        modality=film.modality,
        sop_class=sop_class,
        header=header,
    )
    return part10_bytes(ds, film.transfer_syntax)
