"""Build ``samples/``: the chest films ``make demo`` classifies, as PNG and as hospital-like DICOM.

    python -m scripts.make_samples [--data ../shared/data] [--out samples] [--nema DIR]

Deterministic: the same source films give the same bytes (fixed UIDs, no timestamps), so a rebuild
shows up in ``git diff`` only when something really changed. The sources are named in SAMPLES below
and their licences in ``samples/README.md``; nothing else from the data folder is copied.

The DICOM files are what a department's modalities send, not 224 px thumbnails: the 224 px source is
upsampled to about 2k px (the size of a CR cassette or DX detector read-out at ~0.2 mm), rescaled to
12-16 stored bits, and written as CR or DX with the photometric interpretation and transfer syntax
named per file (MONOCHROME1 is inverted here so the film still looks right once a viewer, or our
decoder, applies it). Upsampling adds no detail: the model sees what the 224 px source held.

Two files are real radiographs, copied byte for byte: NEMA WG04's compressed-sample CR films RG1 (an
adult chest PA) and RG3 (a tibia), from the pydicom-data package (MIT; ``pip download pydicom-data``,
folder ``data_store/data``; ``--nema`` points at it). They are the only adult chest film we could
find whose licence allows committing it, and a real non-chest film a modality could send by mistake.
"""

import argparse
import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    JPEG2000,
    UID,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSNearLossless,
)

log = logging.getLogger(__name__)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "samples"
MANIFEST = "samples.json"
# A fixed UID root for sample objects: every UID below is derived from it and the file name, so
# rebuilding gives identical files. 2.25 = the UUID-derived arc, here from a fixed hash, not a UUID.
_UID_ROOT = "2.25."

# "accepted": a real film with no recorded diagnosis - it must pass every check and get an answer,
# but which class is not asserted.
Expected = Literal["NORMAL", "PNEUMONIA", "refused", "accepted"]


@dataclass(frozen=True)
class Sample:
    """One sample file: where it comes from, what the released model should answer."""

    name: str
    source: str  # relative to the data folder
    expected: Expected
    population: str


@dataclass(frozen=True)
class DicomSample:
    """A DICOM film built from one of the PNG samples."""

    name: str
    png: str
    modality: Literal["CR", "DX"]
    photometric: Literal["MONOCHROME1", "MONOCHROME2"]
    bits_stored: int
    transfer_syntax: UID
    rows: int
    columns: int
    # Lossy encoders only: JPEG-LS near-lossless error bound, or JPEG 2000 compression ratio.
    jls_error: int | None = None
    j2k_ratio: float | None = None


# Films from the validation split of the released model's run (issue 16's runs/default-v1), so it did
# not train on them; samples/README.md says how they were chosen.
SAMPLES = (
    Sample("pediatric-normal-1.png", "kermany224/train/NORMAL/IM-0143-0001.jpeg", "NORMAL", "pediatric"),
    Sample("pediatric-normal-2.png", "kermany224/train/NORMAL/IM-0131-0001.jpeg", "NORMAL", "pediatric"),
    Sample(
        "pediatric-pneumonia-bacterial.png",
        "kermany224/train/PNEUMONIA/person1001_bacteria_2932.jpeg",
        "PNEUMONIA",
        "pediatric",
    ),
    Sample(
        "pediatric-pneumonia-viral.png",
        "kermany224/train/PNEUMONIA/person1009_virus_1694.jpeg",
        "PNEUMONIA",
        "pediatric",
    ),
    Sample(
        "not-a-chest-film-blood-smear.png", "leukemia-all224/Benign/WBC-Benign-001.jpeg", "refused", "none"
    ),
)

# Sizes: the repository keeps the folder under 3 MB, so two films are lossless and two use the lossy
# syntaxes archives use for long-term storage (error bound / ratio chosen well below what shows).
DICOM_SAMPLES = (
    DicomSample(
        "cr-monochrome1-normal.dcm",
        "pediatric-normal-1.png",
        "CR",
        "MONOCHROME1",
        12,
        JPEGLSNearLossless,
        2140,
        1760,
        jls_error=4,
    ),
    DicomSample(
        "dx-jpeg2000-pneumonia.dcm",
        "pediatric-pneumonia-bacterial.png",
        "DX",
        "MONOCHROME2",
        14,
        JPEG2000,
        2048,
        2048,
        j2k_ratio=20,
    ),
    DicomSample(
        "dx-16bit-normal.dcm",
        "pediatric-normal-2.png",
        "DX",
        "MONOCHROME2",
        16,
        JPEGLSNearLossless,
        2000,
        1800,
        jls_error=128,
    ),
    DicomSample(
        "cr-jpeg2000-lossless-pneumonia.dcm",
        "pediatric-pneumonia-viral.png",
        "CR",
        "MONOCHROME2",
        12,
        JPEG2000Lossless,
        1760,
        1440,
    ),
)


def as_png(source: Path, mode: str) -> bytes:
    """The source image as PNG: chest films as 8-bit grayscale (the Kermany JPEGs are gray stored as
    RGB), the blood smear in colour, as a microscope camera writes it."""
    with Image.open(source) as image:
        converted = image.convert(mode)
    buffer = io.BytesIO()
    converted.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def as_detector_pixels(png: bytes, rows: int, columns: int, bits_stored: int) -> npt.NDArray[np.uint16]:
    """The film upsampled to ``rows x columns`` and spread over ``bits_stored`` bits (MONOCHROME2)."""
    with Image.open(io.BytesIO(png)) as image:
        plane = np.asarray(image.convert("L").resize((columns, rows), Image.Resampling.BICUBIC), np.float64)
    top = 2**bits_stored - 1
    # Detectors rarely use the full range: leave a margin at both ends, as a real read-out has.
    scaled = 0.04 * top + (plane / 255.0) * 0.92 * top
    return np.asarray(np.clip(np.round(scaled), 0, top), dtype=np.uint16)


def _uid(name: str, role: str) -> UID:
    digest = int.from_bytes(hashlib.sha256(f"cxr-triage sample {name} {role}".encode()).digest()[:16], "big")
    return UID(_UID_ROOT + str(digest))


def dicom_film(sample: DicomSample, png: bytes) -> bytes:
    """One Part-10 file with the modality's usual attributes and a synthetic, obviously fake patient."""
    pixels = as_detector_pixels(png, sample.rows, sample.columns, sample.bits_stored)
    top = 2**sample.bits_stored - 1
    if sample.photometric == "MONOCHROME1":
        pixels = np.asarray(top - pixels, dtype=np.uint16)  # stored inverted; the reader inverts back
    sop_class = (
        ComputedRadiographyImageStorage if sample.modality == "CR" else DigitalXRayImageStorageForPresentation
    )
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = _uid(sample.name, "instance")
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = _uid(sample.name, "instance")
    ds.StudyInstanceUID = _uid(sample.name, "study")
    ds.SeriesInstanceUID = _uid(sample.name, "series")
    ds.PatientName = "SAMPLE^FILM"
    ds.PatientID = "SAMPLE-" + sample.name.split(".")[0]
    ds.PatientSex = "O"
    ds.Modality = sample.modality
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "AP"  # the Kermany films are pediatric, mostly supine AP
    ds.Manufacturer = "cxr-triage sample builder"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = sample.photometric
    ds.Rows, ds.Columns = sample.rows, sample.columns
    ds.BitsAllocated = 16
    ds.BitsStored = sample.bits_stored
    ds.HighBit = sample.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    ds.WindowCenter = top // 2
    ds.WindowWidth = top
    spacing = [0.2, 0.2]
    if sample.modality == "DX":
        ds.ImagerPixelSpacing = spacing
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
    else:
        ds.PixelSpacing = spacing
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PixelData = pixels.tobytes()
    if sample.jls_error is not None:
        ds.compress(sample.transfer_syntax, pixels, jls_error=sample.jls_error, generate_instance_uid=False)
    elif sample.j2k_ratio is not None:
        ds.compress(sample.transfer_syntax, pixels, j2k_cr=[sample.j2k_ratio], generate_instance_uid=False)
    else:
        ds.compress(sample.transfer_syntax, pixels, generate_instance_uid=False)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def build(data: Path, out: Path, nema: Path | None) -> list[dict[str, str]]:
    """Write every sample into ``out``; returns the manifest rows (also written as samples.json)."""
    out.mkdir(parents=True, exist_ok=True)
    pngs: dict[str, bytes] = {}
    rows: list[dict[str, str]] = []
    for sample in SAMPLES:
        source = data / sample.source
        pngs[sample.name] = as_png(source, "RGB" if sample.expected == "refused" else "L")
        (out / sample.name).write_bytes(pngs[sample.name])
        rows.append(_row(sample.name, sample, "PNG", out))
    by_name = {sample.name: sample for sample in SAMPLES}
    for dicom in DICOM_SAMPLES:
        (out / dicom.name).write_bytes(dicom_film(dicom, pngs[dicom.png]))
        origin = by_name[dicom.png]
        kind = (
            f"DICOM {dicom.modality} {dicom.photometric} {dicom.bits_stored}-bit "
            f"{dicom.rows}x{dicom.columns} {dicom.transfer_syntax.name}"
        )
        rows.append(_row(dicom.name, origin, kind, out))
    rows.extend(copy_real_films(nema, out))
    (out / MANIFEST).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return rows


@dataclass(frozen=True)
class RealFilm:
    """A real radiograph copied unchanged; ``refusal_code``: the service's reason when it must refuse."""

    name: str
    source: str  # file name in pydicom-data's data_store/data
    kind: str
    expected: Expected
    population: str
    refusal_code: str | None = None


REAL_FILMS = (
    RealFilm(
        "adult-cr-chest-pa-jpeg2000.dcm",
        "RG1_J2KI.dcm",
        "DICOM CR MONOCHROME1 15-bit 1955x1841 JPEG 2000 (lossy), real adult chest PA (NEMA WG04 RG1)",
        "accepted",
        "adult",
    ),
    RealFilm(
        "not-a-chest-film-cr-tibia.dcm",
        "RG3_J2KI.dcm",
        "DICOM CR MONOCHROME1 10-bit 1760x1760 JPEG 2000 (lossy), real tibia AP (NEMA WG04 RG3)",
        "refused",
        "adult",
        "unsupported_body_part",
    ),
)


def default_nema_dir() -> Path | None:
    """pydicom-data's folder when that package is installed (it is not a project dependency)."""
    try:
        import data_store  # type: ignore[import-not-found]  # pydicom-data's package
    except ImportError:
        return None
    return Path(data_store.__file__).parent / "data"


def copy_real_films(nema: Path | None, out: Path) -> list[dict[str, str]]:
    if nema is None or not all((nema / film.source).is_file() for film in REAL_FILMS):
        raise SystemExit(
            "NEMA WG04 films not found: pip download pydicom-data, unzip the wheel and pass "
            "--nema <unzipped>/data_store/data"
        )
    rows = []
    for film in REAL_FILMS:
        (out / film.name).write_bytes((nema / film.source).read_bytes())
        digest = hashlib.sha256((out / film.name).read_bytes()).hexdigest()
        row = {
            "file": film.name,
            "format": film.kind,
            "expected": film.expected,
            "population": film.population,
            "source": f"pydicom-data 1.0.0 data_store/data/{film.source}",
            "sha256": digest,
        }
        rows.append(row | ({"refusal_code": film.refusal_code} if film.refusal_code else {}))
    return rows


def _row(name: str, origin: Sample, kind: str, out: Path) -> dict[str, str]:
    digest = hashlib.sha256((out / name).read_bytes()).hexdigest()
    return {
        "file": name,
        "format": kind,
        "expected": origin.expected,
        "population": origin.population,
        "source": origin.source,
        "sha256": digest,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--nema", type=Path, default=default_nema_dir(), help="pydicom-data: data_store/data")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for row in build(args.data, args.out, args.nema):
        size = (args.out / row["file"]).stat().st_size
        log.info("%-36s %8d bytes  %s", row["file"], size, row["format"])


if __name__ == "__main__":
    main()
