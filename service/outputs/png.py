"""A lean PNG encoder for the overlay and the film under it: 8-bit grey or RGB, lossless.

Pillow picks a filter per row by trying all five, then deflates at the level asked. For the overlay
that was the most expensive step of a response (about 3 ms for 224 x 224, 14 ms for 512 x 512 at
level 1 on our 2-core machine). Here every row gets the PNG "Up" filter (each byte minus the byte
above it), computed for the whole image in one numpy subtraction, and the filtered rows are deflated
by Intel's ISA-L (python-isal, ``isal_zlib``: the zlib format, read by every PNG decoder) at level
1: about a quarter of zlib's time at level 1 for a file 2% larger (measured 2026-12-06 on real
overlays: 0.38 against 1.46 ms, 62.7 against 61.5 KB). The image decodes to exactly the same pixels;
only the compressed bytes differ.
"""

import struct
import zlib
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from isal import isal_zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFLATE_LEVEL = 1  # ISA-L's levels are 0-3; 2 and 3 cost more for under 1% smaller overlays
_FILTER_UP = 2
_COLOUR_TYPES = {2: 0, 3: 2}  # ndim -> PNG colour type: grey, RGB (truecolour)


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


Deflate = Callable[[memoryview, int], bytes]  # zlib.compress's shape: (data, level) -> zlib stream


def encode_png(pixels: npt.NDArray[np.uint8], deflate: Deflate = isal_zlib.compress) -> bytes:
    """``pixels`` ([h, w] grey or [h, w, 3] RGB, uint8) as a PNG file. ``deflate``: ISA-L's
    (``zlib.compress`` gives the same pixels, slower; bench.stages times both)."""
    if pixels.dtype != np.uint8 or pixels.ndim not in _COLOUR_TYPES or pixels.size == 0:
        raise ValueError(
            f"expected a non-empty uint8 [h, w] or [h, w, 3] array, got {pixels.dtype} {pixels.shape}"
        )
    if pixels.ndim == 3 and pixels.shape[2] != 3:
        raise ValueError(f"expected 3 channels, got {pixels.shape[2]}")
    height, width = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels).reshape(height, -1)
    # Each scanline: its filter byte, then its bytes minus the previous scanline's, modulo 256 (uint8
    # arithmetic wraps); the first scanline has nothing above it, so it is kept as it is.
    filtered = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = _FILTER_UP
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPES[pixels.ndim], 0, 0, 0)
    idat = deflate(filtered.data, DEFLATE_LEVEL)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
