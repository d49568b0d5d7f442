"""PNG and JPEG decoding with Pillow, to one float32 luminance plane; pixel arrays the same way."""

import io
import struct
import zlib
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from service.contract.decoded import DecodedImage, DecodeLimits, check_pixel_budget
from service.contract.errors import InputError
from service.contract.sniff import PNG_MAGIC, SourceFormat

# ITU-R BT.601 luma weights, applied in float so no rounding step differs between paths.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_BAND_ROWS = 256  # rows converted at a time: 7 MB of float32 for a 7071-pixel-wide film
_PIL_FORMAT = {SourceFormat.PNG: "PNG", SourceFormat.JPEG: "JPEG"}
# (channels, dtype) of an array -> the Pillow mode a PNG of it decodes to; 0 channels = (H, W).
_ARRAY_MODES = {
    (0, np.dtype(np.uint8)): "L",
    (0, np.dtype(np.uint16)): "I;16",
    (3, np.dtype(np.uint8)): "RGB",
    (4, np.dtype(np.uint8)): "RGBA",
}


def decode_raster(data: bytes, source_format: SourceFormat, limits: DecodeLimits) -> DecodedImage:
    name = _PIL_FORMAT[source_format]
    if source_format is SourceFormat.PNG:
        check_png_chunks(data)
    try:
        with Image.open(io.BytesIO(data), formats=[name]) as image:
            if source_format is SourceFormat.JPEG and image.mode in ("RGB", "YCbCr"):
                # libjpeg hands over the luma plane it decodes anyway: a third of the memory of RGB,
                # and BT.601 luma either way (JPEG's YCbCr is defined with the same weights).
                image.draft("L", image.size)
            # The header is parsed, nothing is decompressed yet: refuse bombs before load(), by
            # pixels and by the bytes the decoder will hold (Pillow keeps 4 bytes per pixel for any
            # multi-band mode).
            check_pixel_budget(image.width, image.height, limits, _pillow_bytes_per_pixel(image.mode))
            if getattr(image, "n_frames", 1) > 1:
                raise InputError(
                    "multi_frame", f"Animated/multi-frame {name} files are not accepted.", status=422
                )
            image.load()
            pixels = _luminance(ImageOps.exif_transpose(image))
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputError("too_many_pixels", f"The {name} image is too large to decode.", 422) from exc
    except ValueError as exc:
        # Pillow inflates at most 1 MiB per zTXt/iTXt/iCCP chunk and 64 MiB of text in all, and says
        # so only in its message; a well-formed file carrying such a bomb is not "corrupt".
        if "MAX_TEXT" in str(exc):
            raise InputError(
                "decompressed_too_large",
                f"The {name} file carries compressed text or colour-profile metadata that inflates "
                "past the decoder's limit (1 MiB per chunk); strip the metadata and upload again.",
                422,
            ) from exc
        raise InputError("corrupt_image", f"The {name} file is truncated or corrupt.") from exc
    except (OSError, SyntaxError, EOFError, MemoryError) as exc:
        raise InputError("corrupt_image", f"The {name} file is truncated or corrupt.") from exc
    return DecodedImage(pixels=pixels, source_format=source_format)


def decode_array(array: npt.NDArray[Any], limits: DecodeLimits | None = None) -> DecodedImage:
    """A pixel array (e.g. one row of a MedMNIST ``.npz``) -> the plane a PNG of it decodes to.

    Accepts uint8 or uint16 gray ``(H, W)`` or ``(H, W, 1)``, and uint8 RGB ``(H, W, 3)`` or RGBA
    ``(H, W, 4)``. The array becomes the Pillow image a PNG decoder would return and goes through
    the same ``_luminance`` as every PNG and JPEG, so colour is reduced to luma by the same code.
    """
    pixels = np.asarray(array)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    channels = pixels.shape[2] if pixels.ndim == 3 else 0
    # Native byte order, so a big-endian uint16 array is not read as a different Pillow mode.
    native = pixels.dtype.newbyteorder("=") if pixels.dtype.kind == "u" else pixels.dtype
    expected_mode = _ARRAY_MODES.get((channels, native)) if pixels.ndim in (2, 3) else None
    if expected_mode is None:
        raise InputError(
            "unsupported_array",
            f"A pixel array must be uint8/uint16 (H, W), or uint8 (H, W, 3) RGB or (H, W, 4) RGBA; "
            f"got {pixels.dtype} with shape {pixels.shape}.",
            status=422,
        )
    check_pixel_budget(pixels.shape[1], pixels.shape[0], limits or DecodeLimits())
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=native))
    return DecodedImage(pixels=_luminance(image), source_format=SourceFormat.ARRAY)


def _pillow_bytes_per_pixel(mode: str) -> int:
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4  # I, F, and every multi-band mode (LA, RGB, RGBA, CMYK, YCbCr...)


def _luminance(image: Image.Image) -> npt.NDArray[np.float32]:
    """The float32 plane, filled a band of rows at a time: never a full-size copy of the decoded
    image (``np.asarray`` of a whole image is one) nor a full-size float RGB temporary (12 bytes a
    pixel: 600 MB for a 7071 x 7071 RGBA film)."""
    out = np.empty((image.height, image.width), dtype=np.float32)
    for top in range(0, image.height, _BAND_ROWS):
        band = image.crop((0, top, image.width, min(top + _BAND_ROWS, image.height)))
        out[top : top + band.height] = _band_luminance(band)
    return out


def _band_luminance(image: Image.Image) -> npt.NDArray[np.float32]:
    mode = image.mode
    if mode in ("L", "I", "F") or mode.startswith("I;16"):
        return np.asarray(image, dtype=np.float32)
    if mode == "LA":
        return np.asarray(image.getchannel("L"), dtype=np.float32)
    if mode == "1":
        return np.asarray(image.convert("L"), dtype=np.float32)
    # Palette, RGB(A), CMYK, YCbCr...: alpha is ignored, colour reduced to luma.
    return rgb_luminance(np.asarray(image.convert("RGB"), dtype=np.uint8))


def rgb_luminance(rgb: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """BT.601 luma of an (H, W, 3) array, a band of rows at a time (the DICOM colour path too)."""
    out = np.empty(rgb.shape[:2], dtype=np.float32)
    for top in range(0, rgb.shape[0], _BAND_ROWS):
        out[top : top + _BAND_ROWS] = rgb[top : top + _BAND_ROWS].astype(np.float32) @ _LUMA
    return out


def check_png_chunks(data: bytes) -> None:
    """Refuse a PNG any of whose chunks fails its CRC-32. Pillow checks only some chunks and reads
    IDAT (the pixels) unchecked, so a film damaged in transit or storage would be scored as it is;
    a corrupt film must be sent again, not read. Costs one CRC pass over the file (~10 ms / 30 MB)."""
    view = memoryview(data)
    position = len(PNG_MAGIC)
    while position + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 8 + length
        if end + 4 > len(data):
            return  # truncated: Pillow's own error says so (corrupt_image)
        (stored,) = struct.unpack_from(">I", data, end)
        if zlib.crc32(view[position + 4 : end]) != stored:
            raise InputError(
                "corrupt_image",
                f"The PNG's {kind.decode('latin-1', 'replace')!r} chunk fails its CRC-32 checksum: "
                "the file is damaged.",
            )
        if kind == b"IEND":
            return
        position = end + 4
