"""Acquisition shifts and film annotations as array functions, each written once (MONAI style).

Every function takes a float32 plane ``[H, W]`` with values in ``[0, 1]`` (brighter = larger) and
returns a new plane of the same shape and range. Three users share them:

* the shift benchmark (``training.evaluation.shift_benchmark``) applies one at graded severities to decoded
  validation films before the preprocessing contract, as a different site's film would arrive;
* training augmentation (``training.data.augment.RandAcquisition``) draws them at random per film;
* the out-of-distribution validation (``training.ood.film_set``) burns annotations into real films,
  which must still pass the gate.

``SHIFTS`` maps a shift name to ``severity -> plane function``; severity 0 is always the identity.
"""

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter

Plane = npt.NDArray[np.float32]
SEVERITIES = (0, 1, 2, 3)
_TEXT = ("L", "R", "AP", "PA", "PORTABLE", "SUPINE", "ERECT", "12:04", "CR3", "ICU", "x-ray 2", "1:1")


def _clip(plane: npt.NDArray[np.floating]) -> Plane:
    out: Plane = np.clip(plane, 0.0, 1.0).astype(np.float32)
    return out


def _to_pil(plane: Plane) -> Image.Image:
    return Image.fromarray(np.round(_clip(plane) * 255).astype(np.uint8))


def _from_pil(image: Image.Image) -> Plane:
    out: Plane = np.asarray(image, dtype=np.float32) / 255.0
    return out


def to_unit(pixels: npt.NDArray[np.floating]) -> Plane:
    """Any decoded plane -> [0, 1] by its own min and max (the shifts' working range)."""
    low, high = float(pixels.min()), float(pixels.max())
    if high <= low:
        return np.zeros(pixels.shape, dtype=np.float32)
    return _clip((pixels.astype(np.float64) - low) / (high - low))


# --- intensity -----------------------------------------------------------------------------------


def gamma(plane: Plane, value: float) -> Plane:
    return _clip(np.power(_clip(plane), value))


def contrast(plane: Plane, factor: float) -> Plane:
    """Scale deviations from the mean: below 1 a flat, washed-out film, above 1 a harsh one."""
    mean = float(plane.mean())
    return _clip((plane - mean) * factor + mean)


def brightness(plane: Plane, offset: float) -> Plane:
    return _clip(plane + offset)


def invert(plane: Plane) -> Plane:
    """Polarity reversed, as a MONOCHROME1 film read without its flag would look."""
    return _clip(1.0 - plane)


# --- sharpness, noise, compression, resolution ---------------------------------------------------


def blur(plane: Plane, sigma: float) -> Plane:
    if sigma <= 0:
        return plane.copy()
    return _from_pil(_to_pil(plane).filter(ImageFilter.GaussianBlur(radius=sigma)))


def sharpen(plane: Plane, amount: float) -> Plane:
    """Unsharp masking (what many CR/DX consoles apply by default): amount 0 = none."""
    if amount <= 0:
        return plane.copy()
    smooth = blur(plane, 2.0)
    return _clip(plane + amount * (plane - smooth))


def noise(plane: Plane, sigma: float, seed: int = 0) -> Plane:
    """Additive Gaussian noise (quantum mottle of a low-dose film), seeded so a benchmark repeats."""
    if sigma <= 0:
        return plane.copy()
    rng = np.random.default_rng(seed)
    return _clip(plane + rng.normal(0.0, sigma, plane.shape))


def jpeg(plane: Plane, quality: int) -> Plane:
    """Re-encoded as baseline JPEG at ``quality`` (1-95), as films forwarded by e-mail or PACS export are."""
    buffer = io.BytesIO()
    _to_pil(plane).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return _from_pil(decoded.convert("L"))


def down_up(plane: Plane, factor: float) -> Plane:
    """Downscaled by ``factor`` and back: the detail a lower-resolution detector never recorded."""
    if factor <= 1:
        return plane.copy()
    height, width = plane.shape
    small = (max(4, round(width / factor)), max(4, round(height / factor)))
    image = Image.fromarray(plane.astype(np.float32)).resize(small, Image.Resampling.BILINEAR)
    return _clip(np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32))


# --- geometry --------------------------------------------------------------------------------------


def _resize(plane: Plane, height: int, width: int) -> Plane:
    image = Image.fromarray(plane.astype(np.float32)).resize((width, height), Image.Resampling.BILINEAR)
    return _clip(np.asarray(image, dtype=np.float32))


def zoom_crop(plane: Plane, fraction: float) -> Plane:
    """Collimated tighter: ``fraction`` of each side cut away, the rest scaled back to full size."""
    if fraction <= 0:
        return plane.copy()
    height, width = plane.shape
    dy, dx = round(height * fraction), round(width * fraction)
    inner = plane[dy : height - dy, dx : width - dx]
    return _resize(inner, height, width)


def border(plane: Plane, fraction: float) -> Plane:
    """Collimated wider: the film shrunk inside a dark frame (``fraction`` of each side)."""
    if fraction <= 0:
        return plane.copy()
    height, width = plane.shape
    dy, dx = round(height * fraction), round(width * fraction)
    out = np.zeros_like(plane)
    out[dy : height - dy, dx : width - dx] = _resize(plane, height - 2 * dy, width - 2 * dx)
    return out


def rotate(plane: Plane, degrees: float) -> Plane:
    """A patient not quite straight on the detector; corners filled with black."""
    if degrees == 0:
        return plane.copy()
    image = Image.fromarray(plane.astype(np.float32)).rotate(
        degrees, resample=Image.Resampling.BILINEAR, fillcolor=0.0
    )
    return _clip(np.asarray(image, dtype=np.float32))


# --- annotations burned into the pixels -------------------------------------------------------------


def _draw(
    plane: Plane, paint: Callable[[ImageDraw.ImageDraw, int, int, np.random.Generator], None], seed: int
) -> Plane:
    image = _to_pil(plane)
    paint(ImageDraw.Draw(image), image.width, image.height, np.random.default_rng(seed))
    drawn = _from_pil(image)
    # Keep the original's float precision wherever nothing was drawn.
    changed = np.abs(drawn - np.round(_clip(plane) * 255) / 255) > 1e-6
    return np.where(changed, drawn, plane).astype(np.float32)


def burned_text(plane: Plane, lines: int, seed: int = 0) -> Plane:
    """White text in the corners (site, date, view, markers), ``lines`` lines per used corner, with a
    dark bar behind the first one as many consoles print."""
    if lines <= 0:
        return plane.copy()

    def paint(draw: ImageDraw.ImageDraw, width: int, height: int, rng: np.random.Generator) -> None:
        step = max(9, height // 22)
        draw.rectangle((0, 0, width // 2, step + 2), fill=0)
        for corner in range(min(4, lines + 1)):
            x = 3 if corner % 2 == 0 else width - width // 3
            y0 = 2 if corner < 2 else height - step * lines - 2
            for line in range(lines):
                words = " ".join(str(w) for w in rng.choice(_TEXT, size=2))
                draw.text((x, y0 + line * step), words, fill=255)

    return _draw(plane, paint, seed)


def markers(plane: Plane, count: int, seed: int = 0) -> Plane:
    """Lead laterality markers: a bright letter in a box near an upper corner."""
    if count <= 0:
        return plane.copy()

    def paint(draw: ImageDraw.ImageDraw, width: int, height: int, rng: np.random.Generator) -> None:
        side = max(8, width // 14)
        for _ in range(count):
            x = int(rng.integers(2, max(3, width // 5))) if rng.random() < 0.5 else width - side - 4
            y = int(rng.integers(2, max(3, height // 5)))
            draw.rectangle((x, y, x + side, y + side), fill=240, outline=255)
            draw.text((x + side // 3, y + side // 4), str(rng.choice(["L", "R"])), fill=20)

    return _draw(plane, paint, seed)


def ruler(plane: Plane, count: int, seed: int = 0) -> Plane:
    """Calibration rulers along an edge: a bright bar with tick marks."""
    if count <= 0:
        return plane.copy()

    def paint(draw: ImageDraw.ImageDraw, width: int, height: int, rng: np.random.Generator) -> None:
        for index in range(count):
            x = 3 + index * 10 if index % 2 == 0 else width - 10 - index * 10
            top = int(rng.integers(height // 10, height // 3))
            draw.rectangle((x, top, x + 4, height - top), fill=230)
            for y in range(top, height - top, max(3, height // 40)):
                draw.line((x + 4, y, x + 8, y), fill=255)

    return _draw(plane, paint, seed)


def lines_and_wires(plane: Plane, count: int, seed: int = 0) -> Plane:
    """ECG leads, device wires and catheter-like lines across the chest: thin bright curves, with a
    round electrode pad at each end."""
    if count <= 0:
        return plane.copy()

    def paint(draw: ImageDraw.ImageDraw, width: int, height: int, rng: np.random.Generator) -> None:
        for _ in range(count):
            points = [
                (float(rng.uniform(0, width)), float(rng.uniform(0, height)))
                for _ in range(int(rng.integers(3, 6)))
            ]
            draw.line(points, fill=int(rng.integers(200, 256)), width=max(1, width // 200), joint="curve")
            for x, y in (points[0], points[-1]):
                r = max(2, width // 60)
                draw.ellipse((x - r, y - r, x + r, y + r), fill=250)

    return _draw(plane, paint, seed)


# --- the registry ------------------------------------------------------------------------------------

ShiftFunction = Callable[[Plane], Plane]


@dataclass(frozen=True)
class Shift:
    """One kind of shift: its plane function per severity (index 0 = identity) and how it is graded."""

    name: str
    levels: tuple[float, ...]  # the parameter at severities 1..3
    apply: Callable[[Plane, float], Plane]
    unit: str

    def at(self, severity: int) -> ShiftFunction:
        if severity == 0:
            return lambda plane: plane.copy()
        value = self.levels[severity - 1]
        return lambda plane: self.apply(plane, value)

    def describe(self, severity: int) -> str:
        return "identity" if severity == 0 else f"{self.unit} {self.levels[severity - 1]:g}"


SHIFTS: dict[str, Shift] = {
    shift.name: shift
    for shift in (
        Shift("gamma-up", (1.4, 1.8, 2.5), gamma, "gamma"),
        Shift("gamma-down", (0.75, 0.55, 0.4), gamma, "gamma"),
        Shift("contrast-low", (0.75, 0.55, 0.4), contrast, "contrast x"),
        Shift("brightness", (0.08, 0.16, 0.25), brightness, "offset"),
        Shift("blur", (0.6, 1.2, 2.0), blur, "Gaussian sigma px"),
        Shift("sharpen", (0.5, 1.0, 2.0), sharpen, "unsharp amount"),
        Shift("noise", (0.02, 0.05, 0.09), noise, "sigma"),
        Shift("jpeg", (60, 30, 10), lambda p, q: jpeg(p, int(q)), "quality"),
        Shift("down-up", (1.5, 2.5, 4.0), down_up, "factor"),
        Shift("zoom-crop", (0.04, 0.08, 0.12), zoom_crop, "cut per side"),
        Shift("border", (0.04, 0.08, 0.14), border, "frame per side"),
        Shift("rotate", (4.0, 8.0, 14.0), rotate, "degrees"),
        Shift("invert", (1.0, 1.0, 1.0), lambda p, _: invert(p), "inverted"),
        Shift("burned-text", (1, 2, 4), lambda p, n: burned_text(p, int(n)), "lines per corner"),
    )
}

# Annotations real films carry; the OOD gate must let annotated films through.
ANNOTATIONS: dict[str, Callable[[Plane, int, int], Plane]] = {
    "burned-in text": burned_text,
    "laterality markers": markers,
    "rulers": ruler,
    "lines and ECG/device wires": lines_and_wires,
}


def annotate(plane: Plane, seed: int) -> Plane:
    """A random realistic mix of annotations (text, a marker, sometimes a ruler and wires)."""
    rng = np.random.default_rng(seed)
    out = burned_text(plane, int(rng.integers(1, 3)), seed)
    out = markers(out, 1, seed + 1)
    if rng.random() < 0.4:
        out = ruler(out, 1, seed + 2)
    if rng.random() < 0.6:
        out = lines_and_wires(out, int(rng.integers(1, 4)), seed + 3)
    return out
