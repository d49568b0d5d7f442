"""PNG and JPEG decoding with Pillow, to one float32 luminance plane; pixel arrays the same way."""

import io
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from service.contract.decoded import DecodedImage, DecodeLimits, check_pixel_budget
from service.contract.errors import InputError
from service.contract.sniff import SourceFormat

# ITU-R BT.601 luma weights, applied in float so no rounding step differs between paths.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
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
    try:
        with Image.open(io.BytesIO(data), formats=[name]) as image:
            # The header is parsed, nothing is decompressed yet: refuse bombs before load().
            check_pixel_budget(image.width, image.height, limits)
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


def _luminance(image: Image.Image) -> npt.NDArray[np.float32]:
    mode = image.mode
    if mode in ("L", "I", "F") or mode.startswith("I;16"):
        return np.asarray(image, dtype=np.float32)
    if mode == "LA":
        return np.asarray(image.getchannel("L"), dtype=np.float32)
    if mode == "1":
        return np.asarray(image.convert("L"), dtype=np.float32)
    # Palette, RGB(A), CMYK, YCbCr...: alpha is ignored, colour reduced to luma.
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    return np.ascontiguousarray(rgb @ _LUMA, dtype=np.float32)
