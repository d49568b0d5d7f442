"""Films for the load benchmark: Kermany's 224 px PNGs as they are, and made full-size.

The shared data holds the films at 224 px only, but a hospital sends what its detectors make: about
2000 x 2000 pixels, as 8-bit PNG from a viewer's export or as 12-bit DICOM from the modality. So each
film is also upsampled (bicubic) to ``FULL_SIZE`` and written both ways. The pixels carry no more
information than the 224 px film, but the service does the full-size work: a multi-megabyte upload,
a full-size decode and a full-size contrast stretch and resize.
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image

from training.data.chest_dicom import chest_dataset, part10_bytes

FULL_SIZE = (2048, 2048)  # (width, height)
FILM_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")


def film_paths(directory: Path, limit: int, suffixes: tuple[str, ...] = FILM_SUFFIXES) -> list[Path]:
    """Up to ``limit`` films spread evenly over the sorted file list, so every class is represented."""
    paths = sorted(p for p in directory.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
    if len(paths) <= limit:
        return paths
    return [paths[round(i * (len(paths) - 1) / max(limit - 1, 1))] for i in range(limit)]


def grey_png(source: bytes) -> bytes:
    """The film as it is, as an 8-bit grey PNG (what a viewer exports)."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(source)).convert("L").save(buffer, format="PNG")
    return buffer.getvalue()


def full_size_png(source: bytes) -> bytes:
    buffer = io.BytesIO()
    _upsampled(source).save(buffer, format="PNG")
    return buffer.getvalue()


def full_size_dicom(source: bytes) -> bytes:
    """A 12-bit DX-for-presentation chest PA film, uncompressed, with nothing that names a patient."""
    plane = np.asarray(_upsampled(source), dtype=np.float64) / 255.0
    return part10_bytes(chest_dataset(plane))


def _upsampled(source: bytes) -> Image.Image:
    return Image.open(io.BytesIO(source)).convert("L").resize(FULL_SIZE, Image.Resampling.BICUBIC)
