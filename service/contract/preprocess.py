"""Decoded plane -> model input: resize, then percentile contrast stretch to [0, 1].

The stretch maps the 0.5th..99.5th intensity percentiles onto 0..1. It makes the tensor identical
for the same film stored as 8-bit PNG, 12-bit DICOM or MONOCHROME1, and blunts the brightness and
contrast differences between acquisition sites, which matter more here than the last digit of AUC.
Normalisation to the backbone's mean/std and the repeat to three channels happen inside the
exported graph, so this range is the whole pixel contract.
"""

import numpy as np
import numpy.typing as npt
from PIL import Image

from service.contract.decode import decode_image
from service.contract.decoded import DecodedImage, DecodeLimits

PREPROCESSING_VERSION = "cxr-gray-bilinear-p0.5-p99.5-v1"
LOW_PERCENTILE = 0.5
HIGH_PERCENTILE = 99.5
_FLAT_RANGE = 1e-6  # below this the film is constant: no contrast to stretch


def resize_plane(pixels: npt.NDArray[np.float32], height: int, width: int) -> npt.NDArray[np.float32]:
    """Bilinear resize (Pillow antialiases when shrinking), aspect ratio not kept, as in training data."""
    if pixels.shape == (height, width):
        return pixels
    plane = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32))
    resized = plane.resize((width, height), Image.Resampling.BILINEAR)
    out: npt.NDArray[np.float32] = np.asarray(resized, dtype=np.float32)
    return out


def stretch_contrast(pixels: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    low, high = np.percentile(pixels, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if high - low <= _FLAT_RANGE * max(1.0, abs(float(high))):
        return np.zeros_like(pixels, dtype=np.float32)
    # The same operations as ``clip((pixels - low) / (high - low), 0, 1)`` in float64, bit for bit,
    # in one buffer instead of three 400 KB temporaries (224 px). What that saves depends on the
    # allocator's state: 0.47 -> 0.06 ms a film where each temporary is fresh memory, 0.04 ms in
    # bench.stages' loop (docs/performance.md, "The request path, and what did not pay").
    scaled = pixels.astype(np.float64)
    scaled -= low
    scaled /= high - low
    np.clip(scaled, 0.0, 1.0, out=scaled)
    out: npt.NDArray[np.float32] = scaled.astype(np.float32)
    return out


def to_model_input(image: DecodedImage, height: int, width: int) -> npt.NDArray[np.float32]:
    """The model input for one film: float32, shape ``[1, height, width]``, values in ``[0, 1]``."""
    plane = stretch_contrast(resize_plane(image.pixels, height, width))
    return plane[np.newaxis, :, :]


def load_model_input(
    data: bytes, height: int, width: int, limits: DecodeLimits | None = None
) -> tuple[npt.NDArray[np.float32], DecodedImage]:
    """Decode bytes and preprocess them; the function training and the service both call."""
    decoded = decode_image(data, limits)
    return to_model_input(decoded, height, width), decoded
