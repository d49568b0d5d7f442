"""What every fuzzer of the decoding contract checks, and the valid files it starts from.

The property: for any bytes, ``load_model_input`` either returns a finite float32 ``[1, H, W]``
tensor in [0, 1] built from a finite 2-D plane, or raises ``InputError`` with a 4xx status, a code
and a detail. Any other exception, a hang or a memory blow-up is a bug (a 5xx or a dead worker in
the service). Shared by the hypothesis tests and the atheris harness, so both check the same thing.
"""

import numpy as np
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from service.contract import DecodeLimits, InputError, load_model_input
from service.outputs.dicom_results import build_secondary_capture
from tests.factories import (
    animated_bytes,
    chest_like,
    dicom_bytes,
    dicom_dataset,
    dicom_element_flood,
    exif_bytes,
    jpeg_bytes,
    nested_patient_name_dicom,
    png_bytes,
    raw_dicom_dataset,
)

SIZE = 24
# Far below the service's 50 MP: a header claiming more is refused cheaply, so any input that
# really allocates hundreds of MB did so without asking the budget, which is the bug to find.
LIMITS = DecodeLimits(max_pixels=2_000_000, max_decoded_bytes=8_000_000)
_OVERLAY = png_bytes(chest_like(8, 8), mode="RGB")


def _check_input_error(error: InputError) -> None:
    if not (400 <= error.status < 500 and error.code and error.detail):
        raise AssertionError(f"malformed InputError {error.status} {error.code!r}") from error


def check_decode(data: bytes) -> None:
    """Raise AssertionError (or let the stray exception out) if the contract misbehaves on ``data``.

    A DICOM that decodes also goes through the SC builder, which copies its header into a result
    object: a PatientName nested 400 deep once passed decoding and took the builder to 24 GB."""
    try:
        tensor, decoded = load_model_input(data, SIZE, SIZE, LIMITS)
    except InputError as error:
        _check_input_error(error)
        return
    if decoded.dicom is not None:
        try:
            # The SC rather than the SR: the same header copy and writer, without highdicom's
            # content-tree checks that would cut the fuzzer's pace by half.
            build_secondary_capture(
                data, _OVERLAY, model_name="fuzz", model_version="1", class_name="PNEUMONIA", limits=LIMITS
            )
        except InputError as error:
            _check_input_error(error)
    if tensor.shape != (1, SIZE, SIZE) or tensor.dtype != np.float32:
        raise AssertionError(f"tensor {tensor.shape} {tensor.dtype}")
    if not np.all(np.isfinite(tensor)) or float(tensor.min()) < 0.0 or float(tensor.max()) > 1.0:
        raise AssertionError("tensor values outside [0, 1] or not finite")
    pixels = decoded.pixels
    if pixels.ndim != 2 or pixels.dtype != np.float32 or not np.all(np.isfinite(pixels)):
        raise AssertionError(f"decoded plane {pixels.shape} {pixels.dtype} not a finite 2-D float32")
    if pixels.size > LIMITS.max_pixels:
        raise AssertionError(f"decoded {pixels.size} pixels past the {LIMITS.max_pixels} budget")


def seed_files() -> dict[str, bytes]:
    """Small valid files of every accepted kind: mutations of these reach deep into each decoder."""
    film = chest_like(40, 32, seed=8)  # J2K needs 32 pixels a side
    grey8 = dicom_dataset(film, bits_stored=8, bits_allocated=8)
    deflated = dicom_dataset(film)
    deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian  # the whole dataset zipped
    return {
        "png-8bit": png_bytes(film),
        "png-16bit": png_bytes(film, bits=16),
        "png-palette": png_bytes(film, mode="P"),
        "png-rgba": png_bytes(film, mode="RGBA"),
        "png-exif": exif_bytes(film, 6, image_format="PNG"),
        "apng-2-frames": animated_bytes([film, film[::-1]]),
        "jpeg-grey": jpeg_bytes(film, quality=80),
        "jpeg-rgb": jpeg_bytes(film, quality=80, rgb=True),
        "jpeg-exif": exif_bytes(film, 8),
        "dicom-12bit": dicom_bytes(dicom_dataset(film, window=(2000.0, 3000.0), rescale=(1.0, -1024.0))),
        "dicom-monochrome1": dicom_bytes(dicom_dataset(film, photometric="MONOCHROME1")),
        "dicom-rle": dicom_bytes(grey8, transfer_syntax=RLELossless),
        "dicom-j2k": dicom_bytes(grey8, transfer_syntax=JPEG2000Lossless),
        "dicom-jpeg-ls": dicom_bytes(grey8, transfer_syntax=JPEGLSLossless),
        "dicom-jpeg-baseline": dicom_bytes(grey8, transfer_syntax=JPEGBaseline8Bit),
        "dicom-deflated": dicom_bytes(deflated),
        # Metadata shapes (issue 15): nesting at and past the limit, an element flood, raw datasets.
        "dicom-nested-8": nested_patient_name_dicom(film, 8),
        "dicom-nested-40": nested_patient_name_dicom(film, 40),
        "dicom-element-flood-300": dicom_element_flood(film, 300),
        "dicom-raw-implicit": raw_dicom_dataset(dicom_dataset(film), implicit=True),
        "dicom-raw-explicit": raw_dicom_dataset(dicom_dataset(film), implicit=False),
    }
