"""The out-of-distribution evaluation set, built in code from files that ship with installed packages.

Categories (issue 7): natural photographs and textures (scikit-image's sample images), CT and MR slices
(pydicom's bundled test files, fed as images so the image-level score is tested, not the metadata
rule), noise, blank and constant images, documents and screenshots (rendered here), and crops or
rotations of real chest films that no longer look like a frontal chest radiograph.
"""

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image, ImageDraw
from pydicom.pixels.processing import apply_modality_lut

Plane = npt.NDArray[np.float32]


@dataclass(frozen=True)
class OodCase:
    category: str
    name: str
    png: bytes  # every case is served to the model through the real contract, as an upload would be


def _png(plane: npt.NDArray[np.floating] | npt.NDArray[np.integer]) -> bytes:
    """Encode a plane as 16-bit grayscale PNG (keeps CT/MR dynamic range) or 8-bit RGB as given."""
    array = np.asarray(plane)
    if array.ndim == 3:
        image = Image.fromarray(array.astype(np.uint8))
    else:
        lo, hi = float(array.min()), float(array.max())
        scaled = (array - lo) / (hi - lo) if hi > lo else np.zeros_like(array, dtype=np.float64)
        image = Image.fromarray(np.round(scaled * 65535).astype(np.uint16))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _views(name: str, image: Image.Image) -> Iterator[tuple[str, Image.Image]]:
    """The picture, its central crop and a rotation: more than one look at each source."""
    width, height = image.size
    yield name, image
    yield f"{name}-centre", image.crop((width // 4, height // 4, 3 * width // 4, 3 * height // 4))
    yield f"{name}-rot90-gray", image.convert("L").rotate(90, expand=True)


def natural_images() -> Iterator[OodCase]:
    import skimage

    root = Path(skimage.__file__).parent / "data"
    for path in sorted(root.glob("*")):
        if path.suffix.lower() not in {".png", ".jpg", ".jpeg"}:
            continue
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        for name, view in _views(path.stem, image):
            yield OodCase("natural photographs and textures", name, _png(np.asarray(view.convert("RGB"))))


def ct_mr_slices() -> Iterator[OodCase]:
    root = Path(pydicom.__file__).parent / "data" / "test_files"
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path)
            if str(ds.get("Modality", "")) not in {"CT", "MR"} or "PixelData" not in ds:
                continue
            pixels = np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)
        except Exception:  # some test files are deliberately broken or need codecs we lack
            continue
        frames = pixels if pixels.ndim == 3 else pixels[np.newaxis]
        for index, frame in enumerate(frames[:4]):
            if frame.ndim == 2 and min(frame.shape) >= 16 and np.ptp(frame) > 0:
                yield OodCase(f"{ds.Modality} slices", f"{path.relative_to(root)}#{index}", _png(frame))


def noise_images(count: int = 8) -> Iterator[OodCase]:
    rng = np.random.default_rng(7)
    for i in range(count):
        size = (int(rng.integers(128, 512)), int(rng.integers(128, 512)))
        yield OodCase("noise", f"uniform-{i}", _png(rng.random(size)))
        yield OodCase("noise", f"gaussian-{i}", _png(rng.standard_normal(size)))
        yield OodCase("noise", f"salt-pepper-{i}", _png((rng.random(size) > 0.5).astype(np.float64)))
        smooth = np.asarray(
            Image.fromarray(rng.random((8, 8)).astype(np.float32)).resize(
                size[::-1], Image.Resampling.BICUBIC
            )
        )
        yield OodCase("noise", f"smooth-{i}", _png(smooth))


def blank_images() -> Iterator[OodCase]:
    for value in (0.0, 0.25, 0.5, 1.0):
        yield OodCase("blank and constant", f"constant-{value}", _png(np.full((256, 256), value)))
    ramp = np.linspace(0, 1, 256)
    yield OodCase("blank and constant", "ramp-horizontal", _png(np.tile(ramp, (256, 1))))
    yield OodCase("blank and constant", "ramp-vertical", _png(np.tile(ramp[:, None], (1, 256))))
    yield OodCase("blank and constant", "radial", _png(np.hypot(*np.meshgrid(ramp - 0.5, ramp - 0.5))))
    yield OodCase("blank and constant", "checkerboard", _png((np.indices((256, 256)) // 32).sum(0) % 2))
    yield OodCase("blank and constant", "stripes", _png((np.arange(256) // 16 % 2)[None, :].repeat(256, 0)))
    frame = np.zeros((256, 256))
    frame[32:-32, 32:-32] = 1.0
    yield OodCase("blank and constant", "white-square", _png(frame))


_WORDS = [
    "patient",
    "report",
    "finding",
    "impression",
    "lung",
    "heart",
    "normal",
    "study",
    "radiology",
    "accession",
    "chest",
    "view",
]


def documents_and_screenshots(count: int = 10) -> Iterator[OodCase]:
    rng = np.random.default_rng(11)
    for i in range(count):
        page = Image.new("L", (480, 640), 255)
        draw = ImageDraw.Draw(page)
        for line in range(int(rng.integers(12, 40))):
            words = " ".join(rng.choice(_WORDS, size=int(rng.integers(3, 9))))
            draw.text((24, 16 + 15 * line), words, fill=int(rng.integers(0, 80)))
        yield OodCase("documents and screenshots", f"document-{i}", _png(np.asarray(page, dtype=np.float64)))
        screen = Image.new("RGB", (640, 400), tuple(int(v) for v in rng.integers(180, 255, 3)))
        draw = ImageDraw.Draw(screen)
        draw.rectangle((0, 0, 640, 28), fill=tuple(int(v) for v in rng.integers(0, 120, 3)))
        for _ in range(int(rng.integers(4, 10))):
            x, y = int(rng.integers(0, 520)), int(rng.integers(40, 340))
            draw.rectangle(
                (x, y, x + 110, y + 40),
                outline=(40, 40, 40),
                fill=tuple(int(v) for v in rng.integers(0, 255, 3)),
            )
            draw.text((x + 8, y + 12), str(rng.choice(_WORDS)), fill=(0, 0, 0))
        yield OodCase("documents and screenshots", f"screenshot-{i}", _png(np.asarray(screen)))


def non_frontal_crops(films: list[Path], per_film: int = 1) -> Iterator[OodCase]:
    """Parts of real chest films, and films turned on their side: chest-like texture, wrong view."""
    for path in films:
        with Image.open(path) as opened:
            film = opened.convert("L")
        width, height = film.size
        views = {
            "left-half": film.crop((0, 0, width // 2, height)),
            "upper-third": film.crop((0, 0, width, height // 3)),
            "lower-third": film.crop((0, 2 * height // 3, width, height)),
            "rot90": film.rotate(90, expand=True),
            "upside-down": film.rotate(180),
        }
        for name, view in list(views.items())[: max(1, per_film * len(views))]:
            yield OodCase(
                "non-frontal crops and rotations of chest films",
                f"{path.name}:{name}",
                _png(np.asarray(view, dtype=np.float64)),
            )


def build_ood_set(chest_films: list[Path]) -> list[OodCase]:
    return [
        *natural_images(),
        *ct_mr_slices(),
        *noise_images(),
        *blank_images(),
        *documents_and_screenshots(),
        *non_frontal_crops(chest_films),
    ]
