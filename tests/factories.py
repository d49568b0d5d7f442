"""Test images built in code: PNG, JPEG and DICOM bytes from a numpy plane.

One place for every fixture format, so a test states what it varies (photometric, bits, transfer
syntax...) and nothing else. DICOM objects carry a fake patient name and ID on purpose, so tests can
prove those never leak.
"""

import copy
import io
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MediaStorageDirectoryStorage,
)

from training.data.chest_dicom import chest_dataset, part10_bytes, part10_dataset

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
KERMANY_TRAIN = SHARED_DATA / "kermany224" / "train"

FAKE_PATIENT_NAME = "Zzyzx^Quintessa^Marlowe"
FAKE_PATIENT_ID = "MRN-7731-4456-PHI"
FAKE_BIRTH_DATE = "19230417"
# Every fragment of the fake identity that must never appear in decoded metadata, errors or logs.
FAKE_PHI_FRAGMENTS = (*FAKE_PATIENT_NAME.split("^"), FAKE_PATIENT_ID, FAKE_BIRTH_DATE)

EXIF_ORIENTATION_TAG = 0x0112


def chest_like(height: int = 96, width: int = 80, seed: int = 0) -> npt.NDArray[np.float64]:
    """A smooth synthetic 'film' in [0, 1]: two dark lung fields on a bright mediastinum, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    y, x = yy / height, xx / width
    lungs = np.exp(-(((x - 0.3) / 0.14) ** 2 + ((y - 0.5) / 0.28) ** 2))
    lungs += np.exp(-(((x - 0.7) / 0.14) ** 2 + ((y - 0.5) / 0.28) ** 2))
    plane = 0.85 - 0.6 * lungs + 0.05 * rng.standard_normal((height, width))
    return np.asarray(np.clip(plane, 0.0, 1.0), dtype=np.float64)


def png_bytes(plane: npt.NDArray[np.float64], *, bits: int = 8, mode: str | None = None) -> bytes:
    """Encode a [0, 1] plane as grayscale PNG (8 or 16 bit), or convert to ``mode`` (e.g. RGB, P)."""
    if bits == 16:
        image = Image.fromarray((plane * 65535).round().astype(np.uint16))
    else:
        image = Image.fromarray((plane * 255).round().astype(np.uint8))
    if mode is not None:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(plane: npt.NDArray[np.float64], *, quality: int = 95, rgb: bool = False) -> bytes:
    image = Image.fromarray((plane * 255).round().astype(np.uint8))
    if rgb:
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def dicom_dataset(
    plane: npt.NDArray[np.float64],
    *,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    modality: str | None = "DX",
    rescale: tuple[float, float] | None = None,
    window: tuple[float, float] | None = None,
    frames: int = 1,
    bits_allocated: int = 16,
) -> Dataset:
    """A DX-for-presentation object holding ``plane`` scaled to ``bits_stored`` bits, uncompressed.

    ``rescale`` is (slope, intercept); ``window`` is (center, width) in rescaled units.
    MONOCHROME1 stores the inverted values, so the same film looks the same once displayed.
    ``bits_allocated`` is 16 (the default) or 8 (then ``bits_stored`` must be at most 8).
    """
    header: dict[str, object] = {
        "PatientName": FAKE_PATIENT_NAME,
        "PatientID": FAKE_PATIENT_ID,
        "PatientBirthDate": FAKE_BIRTH_DATE,
        "StudyDate": "20240102",
    }
    if rescale is not None:
        header["RescaleSlope"], header["RescaleIntercept"] = rescale
    if window is not None:
        header["WindowCenter"], header["WindowWidth"] = window
    if frames > 1:
        header["NumberOfFrames"] = frames
    ds = chest_dataset(
        plane,
        bits_stored=bits_stored,
        photometric=photometric,
        modality=modality,
        bits_allocated=bits_allocated,
        view_position=None,
        header=header,
    )
    ds.PixelData = ds.PixelData * frames  # every frame the same film
    return ds


def dicom_bytes(ds: Dataset, *, transfer_syntax: UID | None = None) -> bytes:
    """Serialise with preamble + 'DICM'; re-encode the pixel data in ``transfer_syntax`` if given."""
    if transfer_syntax is not None:
        ds = copy.deepcopy(ds)  # Dataset.copy() is shallow: compressing it would alter the caller's
        if transfer_syntax == JPEGBaseline8Bit:
            _encapsulate_jpeg_baseline(ds)
        else:
            ds.compress(transfer_syntax)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _encapsulate_jpeg_baseline(ds: Dataset) -> None:
    """pydicom cannot encode JPEG baseline, so encode each 8-bit frame with Pillow and encapsulate."""
    if int(ds.BitsStored) != 8:
        raise ValueError("JPEG baseline needs an 8-bit dataset")
    planes: Sequence[npt.NDArray[np.uint8]] = [ds.pixel_array.astype(np.uint8)]
    frames = []
    for plane in planes:
        buffer = io.BytesIO()
        Image.fromarray(plane).save(buffer, format="JPEG", quality=95)
        frames.append(buffer.getvalue())
    ds.BitsAllocated = 8
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.LossyImageCompression = "01"


def golden_film(height: int = 120, width: int = 100) -> npt.NDArray[np.float64]:
    """A fixed film in [0, 1] built from closed-form functions only (no RNG stream to drift between
    numpy versions): lung fields, a mediastinum, rib-like bands and a deterministic hash texture."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    y, x = yy / (height - 1), xx / (width - 1)
    lungs = np.exp(-(((x - 0.3) / 0.15) ** 2 + ((y - 0.52) / 0.3) ** 2))
    lungs += np.exp(-(((x - 0.7) / 0.15) ** 2 + ((y - 0.52) / 0.3) ** 2))
    ribs = 0.06 * np.clip(np.sin(2 * np.pi * 7 * y + 3 * (x - 0.5) ** 2), 0.0, None) * lungs
    texture = 0.02 * np.sin(12.9898 * xx + 78.233 * yy)
    plane = 0.82 - 0.55 * lungs + ribs + texture + 0.1 * y
    return np.asarray(np.clip(plane, 0.0, 1.0), dtype=np.float64)


def gray_image(plane: npt.NDArray[np.float64]) -> Image.Image:
    """An 8-bit Pillow ``L`` image of a [0, 1] plane, rounded the same way as :func:`png_bytes`."""
    return Image.fromarray((plane * 255).round().astype(np.uint8))


def pillow_bytes(image: Image.Image, image_format: str, **params: object) -> bytes:
    """Encode with Pillow in any format it writes (GIF, TIFF, BMP, WEBP, APNG, MPO...)."""
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **params)
    return buffer.getvalue()


def exif_bytes(plane: npt.NDArray[np.float64], orientation: int, *, image_format: str = "JPEG") -> bytes:
    """The 8-bit film with an EXIF Orientation tag; the stored pixels are those of ``plane``."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    params: dict[str, object] = {"exif": exif}
    if image_format == "JPEG":
        params["quality"] = 95
    return pillow_bytes(gray_image(plane), image_format, **params)


def animated_bytes(planes: Sequence[npt.NDArray[np.float64]], *, image_format: str = "PNG") -> bytes:
    """A multi-frame file: APNG for ``PNG``, a multi-picture JPEG for ``MPO``."""
    first, *rest = [gray_image(plane) for plane in planes]
    return pillow_bytes(first, image_format, save_all=True, append_images=rest)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_claiming_size(width: int, height: int, *, bit_depth: int = 8, color_type: int = 0) -> bytes:
    """A well-formed PNG header (valid CRCs) claiming ``width`` x ``height``, with a tiny IDAT.

    A decoder that trusted the header and decompressed would need width*height*channels bytes;
    one that checks the header first refuses it after reading a few dozen bytes.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_claiming_size(width: int, height: int) -> bytes:
    """A small baseline JPEG whose SOF0 header is patched to claim ``width`` x ``height``."""
    data = bytearray(jpeg_bytes(chest_like(16, 16)))
    sof = data.find(b"\xff\xc0")
    if sof < 0:
        raise ValueError("Pillow wrote no SOF0 marker")
    # FFC0, length (2), precision (1), then height and width, big-endian.
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def dicom_element_offset(data: bytes, tag: int) -> int:
    """Byte offset of an explicit-VR little-endian element header (group, element) in ``data``."""
    group, element = tag >> 16, tag & 0xFFFF
    offset = data.find(struct.pack("<HH", group, element), 132)
    if offset < 0:
        raise ValueError(f"tag {tag:08X} not found")
    return offset


def rle_frame(segments: Sequence[bytes]) -> bytes:
    """An RLE Lossless frame (PS3.5 G.3.1): 64-byte header of segment offsets, then the segments,
    which are PackBits-style byte runs written by hand (a test can make them lie)."""
    offsets, position = [], 64
    for segment in segments:
        offsets.append(position)
        position += len(segment)
    header = struct.pack(f"<{1 + len(offsets)}I", len(offsets), *offsets).ljust(64, b"\x00")
    return header + b"".join(segments)


def encapsulated_dicom_bytes(ds: Dataset, frames: Sequence[bytes], transfer_syntax: UID) -> bytes:
    """``ds`` with its Pixel Data replaced by the given already-encoded frames, as-is."""
    ds = copy.deepcopy(ds)
    ds.PixelData = encapsulate(list(frames))
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    return dicom_bytes(ds)


def deflated_dicom_bytes(ds: Dataset, *, extra_zeros: int = 0) -> bytes:
    """``ds`` as Deflated Explicit VR Little Endian, optionally followed by a private OB element of
    ``extra_zeros`` zero bytes (a multiple of 1 MiB): a deflate bomb, compressed in 1 MiB steps so
    the test never holds the inflated bytes."""
    ds = copy.deepcopy(ds)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    plain = dicom_bytes(ds)
    meta_end = 144 + struct.unpack_from("<I", plain, 140)[0]  # (0002,0000) counts the rest of group 2
    body = zlib.decompress(plain[meta_end:], -zlib.MAX_WBITS)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [deflate.compress(body)]
    if extra_zeros:
        parts.append(deflate.compress(struct.pack("<HH2sHI", 0x0009, 0x1010, b"OB", 0, extra_zeros)))
        parts += [deflate.compress(bytes(1 << 20)) for _ in range(extra_zeros >> 20)]
    return plain[:meta_end] + b"".join(parts) + deflate.flush()


def png_with_chunk(data: bytes, kind: bytes, payload: bytes) -> bytes:
    """The PNG ``data`` with one more chunk (valid CRC) right after its IHDR."""
    ihdr_end = 8 + 25  # signature, then IHDR: length, type, 13 bytes, CRC
    return data[:ihdr_end] + png_chunk(kind, payload) + data[ihdr_end:]


def dicomdir_bytes() -> bytes:
    """A DICOMDIR (a media index, not an image) whose one record names the fake patient."""
    directory = part10_dataset(MediaStorageDirectoryStorage)
    directory.FileSetID = "XRAYS"
    directory.FileSetConsistencyFlag = 0
    record = Dataset()
    record.DirectoryRecordType = "PATIENT"
    record.PatientName = FAKE_PATIENT_NAME
    record.PatientID = FAKE_PATIENT_ID
    directory.DirectoryRecordSequence = [record]
    return part10_bytes(directory)


def nested_sequence_element(tag: int, depth: int, leaf_value: bytes = b"Zz^Q") -> bytes:
    """Explicit VR LE bytes of element ``tag`` encoded as a sequence nested ``depth`` deep (defined
    lengths), each item holding the same tag again, the innermost a plain PN value."""
    element = struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, b"PN", len(leaf_value)) + leaf_value
    for _ in range(depth):
        item = struct.pack("<HHI", 0xFFFE, 0xE000, len(element)) + element
        element = struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, b"SQ", 0, len(item)) + item
    return element


def nested_patient_name_dicom(plane: npt.NDArray[np.float64], depth: int) -> bytes:
    """A valid film whose PatientName (0010,0010) is a sequence nested ``depth`` deep: the 59 KB
    upload that once made the SC/SR builders grow to 24 GB (issue 15)."""
    ds = dicom_dataset(plane)
    del ds.PatientName
    data = dicom_bytes(ds)
    at = dicom_element_offset(data, 0x00100020)  # PatientID: PatientName belongs right before it
    return data[:at] + nested_sequence_element(0x00100010, depth) + data[at:]


def dicom_element_flood(plane: npt.NDArray[np.float64], count: int) -> bytes:
    """A valid film with ``count`` empty private elements (group 0009, 8 bytes each: 20,000 take
    160 KB) between its group 0008 and its PatientName."""
    data = dicom_bytes(dicom_dataset(plane))
    offset = dicom_element_offset(data, 0x00100010)
    creator = struct.pack("<HH2sH", 0x0009, 0x0010, b"LO", 4) + b"FLOD"
    elements = b"".join(struct.pack("<HH2sH", 0x0009, 0x1000, b"LO", 0) for _ in range(count))
    return data[:offset] + creator + elements + data[offset:]


def raw_dicom_dataset(ds: Dataset, *, implicit: bool) -> bytes:
    """``ds`` written by pydicom as a bare dataset (no preamble, no 'DICM', no file meta), little
    endian, as older modalities and archives write them."""
    bare = Dataset()
    bare.update(ds)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, bare, implicit_vr=implicit, little_endian=True, enforce_file_format=False)
    return buffer.getvalue()
