"""Grad-CAM overlay: the predicted class's map, upsampled onto the film, as an RGB PNG.

The background is the whole decoded film (not the model's distorted H x W input), display-stretched
with the same percentile stretch as the model input and shrunk to fit ``max_side``. The CAM covers
the whole model input, which is the whole film resized, so stretching it bilinearly to the overlay's
size puts every cell back over the region it was computed from.
"""

import numpy as np
import numpy.typing as npt

from service.contract.preprocess import resize_plane, stretch_contrast
from service.outputs.png import encode_png

DEFAULT_ALPHA = 0.5  # heat-map weight where the map peaks; it fades to 0 where the map is 0
_EPSILON = 1e-12
_JET_CENTRES = np.array([0.75, 0.5, 0.25], dtype=np.float32)  # where R, G, B peak along the ramp


def overlay_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(height, width) with the longest side at most ``max_side``, aspect ratio kept, never enlarged."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def normalise_cam(cam: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Scale a raw non-negative CAM to [0, 1] by its maximum; an all-zero (or non-finite) map stays 0."""
    finite = np.clip(np.nan_to_num(cam.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0), 0.0, None)
    peak = float(finite.max(initial=0.0))
    if peak <= _EPSILON:
        return np.zeros_like(finite)
    return finite / peak


def jet(values: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Matplotlib-like 'jet' colormap, [0, 1] -> RGB in [0, 1] (blue = low, red = high)."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    rgb = np.empty((*v.shape, 3), dtype=np.float32)
    plane = np.empty_like(v)
    for channel, centre in enumerate(_JET_CENTRES):
        rgb[..., channel] = _jet_channel(v, centre, out=plane)
    return rgb


def _jet_channel(
    v: npt.NDArray[np.float32], centre: np.float32, out: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """One channel of ``jet`` for ``v`` already clipped to [0, 1], into ``out``: clip(1.5 - |4 (v -
    centre)|, 0, 1), one float32 pass per step in that order, so the same bits as the expression."""
    np.subtract(v, centre, out=out)
    np.multiply(out, np.float32(4.0), out=out)
    np.abs(out, out=out)
    np.subtract(np.float32(1.5), out, out=out)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def overlay_background(
    film: npt.NDArray[np.float32], max_side: int, model_input: npt.NDArray[np.float32] | None = None
) -> npt.NDArray[np.float32]:
    """The film shrunk to fit ``max_side`` and display-stretched to [0, 1]: all the overlay needs of it.

    Computed as soon as the film is decoded, so the full-resolution plane can be freed while the
    film waits for its batch. ``model_input`` ([H, W], from ``service.contract.to_model_input``) is
    the same film through the same resize and stretch: when the overlay has its size (a 224 px film
    for a 224 px model), it is the background, bit for bit, and is reused rather than recomputed.
    """
    height, width = overlay_size(film.shape[0], film.shape[1], max_side)
    if model_input is not None and model_input.shape == (height, width):
        return model_input
    return stretch_contrast(resize_plane(film, height, width))


def overlay_pixels(
    background: npt.NDArray[np.float32], cam: npt.NDArray[np.float32], alpha: float = DEFAULT_ALPHA
) -> npt.NDArray[np.uint8]:
    """Blend ``cam`` ([h, w], raw) over ``background`` (from ``overlay_background``): RGB uint8.

    Opacity follows the map, so regions without evidence show the plain film: a uniform colour wash
    would hide the anatomy the radiologist needs to check the highlight against.
    """
    height, width = background.shape
    heat = resize_plane(normalise_cam(cam), height, width)  # Pillow bilinear on the float map
    # (1 - w) * grey + w * jet(heat), w = alpha * heat, to 0..255, in float32, in the order the
    # formula reads, so every pixel is bit for bit what the plain expression gives. One colour
    # channel at a time over contiguous [h, w] planes: numpy on [h, w, 3] arrays loops over the last
    # axis of 3, about three times slower (reports/bench/stages-*).
    weight = np.float32(alpha) * heat
    grey = (np.float32(1.0) - weight) * background.astype(np.float32, copy=False)
    v = np.clip(heat, 0.0, 1.0)
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    plane = np.empty_like(v)
    for channel, centre in enumerate(_JET_CENTRES):
        _jet_channel(v, centre, out=plane)
        np.multiply(plane, weight, out=plane)
        np.add(grey, plane, out=plane)
        np.multiply(plane, np.float32(255.0), out=plane)
        np.rint(plane, out=plane)
        np.clip(plane, 0.0, 255.0, out=plane)
        rgb[..., channel] = plane  # exact: whole numbers in 0..255
    return rgb


def blend_overlay(
    background: npt.NDArray[np.float32], cam: npt.NDArray[np.float32], alpha: float = DEFAULT_ALPHA
) -> bytes:
    """``overlay_pixels`` as PNG bytes (service.outputs.png: lossless, Up filter, zlib level 1)."""
    return encode_png(overlay_pixels(background, cam, alpha))


def film_png(background: npt.NDArray[np.float32]) -> bytes:
    """``background`` (from ``overlay_background``) alone, as a grayscale PNG: the film under the
    overlay, pixel for pixel, for viewers that fade the heat map rather than show the blend."""
    return encode_png(np.clip(np.rint(background * 255.0), 0, 255).astype(np.uint8))


def render_overlay(
    film: npt.NDArray[np.float32],
    cam: npt.NDArray[np.float32],
    max_side: int,
    alpha: float = DEFAULT_ALPHA,
) -> tuple[bytes, int, int]:
    """Blend ``cam`` over ``film`` (decoded plane) in one step; returns (PNG bytes, width, height)."""
    background = overlay_background(film, max_side)
    return blend_overlay(background, cam, alpha), background.shape[1], background.shape[0]
