"""DICOM decoding with pydicom, to the same float32 plane the raster decoder gives.

Only non-identifying attributes leave this module. pydicom's own value validation is switched off
because its warnings quote element values, and a malformed PatientName would then reach the logs.
"""

import io
import itertools
import re
import zlib

import numpy as np
import numpy.typing as npt
import pydicom
import pydicom.config
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, MediaStorageDirectoryStorage, RLELossless

from service.contract.codestream import BOUNDED_OUTPUT, HEADER_CHECKED, JPEG_EOI, JPEG_FAMILY, frame_header
from service.contract.decoded import DecodedImage, DecodeLimits, DicomInfo, check_pixel_budget
from service.contract.dicom_header import DicomLayout, check_header, dicom_layout
from service.contract.errors import InputError
from service.contract.raster import rgb_luminance
from service.contract.sniff import DICOM_MAGIC_OFFSET, SourceFormat, is_part10
from service.contract.uids import valid_uid

pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

# Projection radiography. Missing Modality is tolerated; anything else (CT, MR, US, ...) is refused.
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR", "RG", "PX"})
# Frontal chest films only. Each tag may be absent (many archives leave them empty); present and
# contradicting - an abdomen, a lateral - the film is refused rather than given a confident answer.
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "PORT CHEST"})
FRONTAL_VIEWS = frozenset({"PA", "AP"})
_MONOCHROME = frozenset({"MONOCHROME1", "MONOCHROME2"})
_COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_UNDEFINED_LENGTH = 0xFFFFFFFF
_PIXEL_DATA_TAG_LE = b"\xe0\x7f\x10\x00"  # (7FE0,0010) as little-endian group, element
_CODE_STRING = re.compile(r"[A-Z0-9_ ]{1,16}")  # DICOM CS: safe to echo, unlike free text
# PS3.10 lets the 128-byte preamble hold anything, so a valid DICOM file can also be a valid program
# (CVE-2019-11687: PE malware that PACS and viewers read as a film). No film needs that: refused.
_EXECUTABLE_SIGNATURES = {
    b"MZ": "a Windows (PE) executable",
    b"\x7fELF": "an ELF executable",
    b"\xfe\xed\xfa\xce": "a Mach-O executable",
    b"\xfe\xed\xfa\xcf": "a Mach-O executable",
    b"\xce\xfa\xed\xfe": "a Mach-O executable",
    b"\xcf\xfa\xed\xfe": "a Mach-O executable",
    b"\xca\xfe\xba\xbe": "a Mach-O universal binary or Java class",
    b"#!": "a script",
}
# pydicom inflates a Deflated Explicit VR dataset in one zlib call: a 300 KB upload became 600 MB.
# The inflated size is measured first, against what the largest acceptable film could need.
_INFLATED_BYTES_PER_PIXEL = 4  # 16-bit grey, 8-bit RGB or 32-bit float; a chest film needs no more
_INFLATED_HEADER_ALLOWANCE = 1 << 20
_INFLATE_CHUNK = 1 << 20


def read_dicom(data: bytes, limits: DecodeLimits, *, stop_before_pixels: bool = False) -> Dataset:
    """A Part 10 file or a raw dataset, parsed by pydicom only once its metadata is known to be
    within ``limits`` (sequence depth, element count, non-pixel bytes) and not truncated.

    A raw dataset gets a file meta holding the transfer syntax inferred from its first element."""
    if is_part10(data):
        _check_preamble(data[:DICOM_MAGIC_OFFSET])
    layout = dicom_layout(data)
    if layout.transfer_syntax is None:
        raise InputError("corrupt_dicom", "The DICOM file meta names no transfer syntax.")
    _check_inflated_size(data, layout, limits)
    summary = check_header(data, layout, limits)
    if layout.inferred and summary.encapsulated_pixels:
        raise InputError(
            "unsupported_transfer_syntax",
            "This DICOM dataset has no file meta, so nothing says how its compressed pixel data is "
            "encoded; send it as a Part 10 file (with preamble and file meta).",
            422,
        )
    try:
        ds = pydicom.dcmread(
            io.BytesIO(data), force=not is_part10(data), stop_before_pixels=stop_before_pixels
        )
    except Exception as exc:  # hostile bytes raise struct.error, BytesLengthException, ... too
        raise InputError("corrupt_dicom", "The DICOM file could not be parsed.") from exc
    if layout.inferred:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = UID(layout.transfer_syntax)
    # pydicom stops quietly at end of file: the walk above refuses a cut-off file; this stays as a
    # second line in case pydicom's reading and the walk ever disagree.
    if "TransferSyntaxUID" not in ds.file_meta or _truncated(ds.file_meta) or _truncated(ds):
        raise InputError("corrupt_dicom", "The DICOM file is truncated or its header is invalid.")
    return ds


def decode_dicom(data: bytes, limits: DecodeLimits) -> DecodedImage:
    ds = read_dicom(data, limits)
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS) and _PIXEL_DATA_TAG_LE in data:
        # pydicom drops a Pixel Data element cut off by the end of the file; the tag is still there.
        raise InputError("corrupt_dicom", "The DICOM pixel data is truncated.")
    info = _check_acceptable(ds, limits)
    pixels = _pixels(ds, info)
    return DecodedImage(pixels=pixels, source_format=SourceFormat.DICOM, dicom=info)


def _check_acceptable(ds: Dataset, limits: DecodeLimits) -> DicomInfo:
    try:
        _check_not_dicomdir(ds)
        if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
            raise InputError("no_pixel_data", "The DICOM object carries no image (no Pixel Data).", 422)
        modality = str(ds.get("Modality", "") or "").strip().upper() or None
        if modality is not None and modality not in RADIOGRAPH_MODALITIES:
            raise InputError(
                "unsupported_modality",
                f"Modality {_echo(modality)} is not a projection radiograph; accepted: "
                f"{', '.join(sorted(RADIOGRAPH_MODALITIES))}.",
                422,
            )
        _check_tag(ds, "BodyPartExamined", CHEST_BODY_PARTS, "unsupported_body_part", "a chest film")
        _check_tag(ds, "ViewPosition", FRONTAL_VIEWS, "unsupported_view", "a frontal (PA or AP) view")
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames != 1:
            raise InputError("multi_frame", f"Multi-frame DICOM ({frames} frames) is not accepted.", 422)
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
        if photometric not in _MONOCHROME | _COLOUR:
            raise InputError(
                "unsupported_photometric",
                f"Photometric interpretation {_echo(photometric)} is not supported.",
                422,
            )
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bytes_per_sample = (int(ds.get("BitsAllocated", 8) or 8) + 7) // 8
        check_pixel_budget(int(ds.Columns), int(ds.Rows), limits, samples * bytes_per_sample)
        transfer_syntax = UID(str(ds.file_meta.TransferSyntaxUID))
        _check_native_length(ds, transfer_syntax)
        _check_compressed_frame(ds, transfer_syntax)
        study_uid, study_warning = _uid(ds, "StudyInstanceUID", "invalid_study_instance_uid")
        sop_uid, sop_warning = _uid(ds, "SOPInstanceUID", "invalid_sop_instance_uid")
        return DicomInfo(
            study_instance_uid=study_uid,
            sop_instance_uid=sop_uid,
            modality=modality,
            photometric_interpretation=photometric,
            transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
            bits_stored=int(ds.get("BitsStored", ds.get("BitsAllocated", 8))),
            warnings=tuple(warning for warning in (study_warning, sop_warning) if warning),
        )
    except InputError:
        raise
    except Exception as exc:  # includes NotImplementedError for a corrupted VR
        raise InputError("corrupt_dicom", "The DICOM image attributes are missing or invalid.") from exc


def _check_preamble(preamble: bytes) -> None:
    for signature, kind in _EXECUTABLE_SIGNATURES.items():
        if preamble.startswith(signature):
            raise InputError(
                "executable_preamble",
                f"The DICOM preamble makes this file {kind} as well as a DICOM object; such "
                "polyglot files are refused. Re-export the film with a zeroed preamble.",
                422,
            )


def _check_inflated_size(data: bytes, layout: DicomLayout, limits: DecodeLimits) -> None:
    """Refuse a deflated dataset that would inflate past what the pixel budget allows, in 1 MiB
    steps that are counted and dropped, before pydicom inflates it whole."""
    if layout.transfer_syntax != DeflatedExplicitVRLittleEndian:
        return
    cap = limits.max_pixels * _INFLATED_BYTES_PER_PIXEL + _INFLATED_HEADER_ALLOWANCE
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending, inflated = data[layout.dataset_offset :], 0
    try:
        while pending and not inflater.eof and inflated <= cap:
            inflated += len(inflater.decompress(pending, _INFLATE_CHUNK))
            pending = inflater.unconsumed_tail
        if inflated <= cap:
            inflated += len(inflater.flush())
    except zlib.error as exc:
        raise InputError("corrupt_dicom", "The deflated DICOM dataset is corrupt.") from exc
    if inflated > cap:
        raise InputError(
            "decompressed_too_large",
            f"The deflated DICOM dataset inflates to more than {cap} bytes, more than any image "
            f"within the {limits.max_pixels}-pixel limit needs.",
            422,
        )


def _check_not_dicomdir(ds: Dataset) -> None:
    sop_classes = {str(ds.file_meta.get("MediaStorageSOPClassUID", "")), str(ds.get("SOPClassUID", ""))}
    if MediaStorageDirectoryStorage in sop_classes:
        raise InputError(
            "dicomdir",
            "This is a DICOMDIR (Media Storage Directory), the index of a DICOM file set, not an "
            "image. Upload the film's own file, which the DICOMDIR lists.",
            422,
        )


def _check_native_length(ds: Dataset, transfer_syntax: UID) -> None:
    """Uncompressed pixel data must hold exactly the frame the header describes (plus one pad byte):
    pydicom silently drops an excess, and a film whose Columns is wrong would then read sheared."""
    if _is_encapsulated(transfer_syntax):
        return
    keyword = next(keyword for keyword in _PIXEL_KEYWORDS if keyword in ds)
    expected = int(get_expected_length(ds, unit="bytes"))
    actual = len(ds[keyword].value)
    if actual not in (expected, expected + expected % 2):
        raise InputError(
            "corrupt_dicom",
            f"The pixel data holds {actual} bytes; Rows, Columns, Samples per Pixel and Bits "
            f"Allocated describe {expected}.",
        )


def _check_compressed_frame(ds: Dataset, transfer_syntax: UID) -> None:
    """The one compressed frame must declare the size Rows and Columns do, before it is decoded:
    the JPEG-family decoders allocate whatever the codestream claims."""
    if not _is_encapsulated(transfer_syntax) or "PixelData" not in ds:
        return
    if transfer_syntax not in BOUNDED_OUTPUT:
        # A decoder pydicom gains later (JPEG XL, deflated frames...) must first get a check here.
        raise InputError(
            "unsupported_transfer_syntax",
            f"Pixel data in transfer syntax {_echo_uid(transfer_syntax)} is not accepted.",
            422,
        )
    if transfer_syntax not in HEADER_CHECKED:
        return
    # Two at most: JPEG fragments without an offset table can hold more frames than announced.
    frames = list(itertools.islice(generate_frames(ds.PixelData, number_of_frames=1), 2))
    if len(frames) != 1:
        raise InputError("corrupt_dicom", "The encapsulated pixel data does not hold exactly one frame.")
    if transfer_syntax in JPEG_FAMILY and not frames[0].rstrip(b"\0").endswith(JPEG_EOI):
        # A cut-off JPEG-LS scan kept CharLS busy for 6-12 s per 1 KB frame (found by fuzzing), and
        # libjpeg quietly fills in what is missing: a frame without its end marker is not decoded.
        raise InputError("corrupt_dicom", "The compressed frame is truncated (no end-of-image marker).")
    header = frame_header(transfer_syntax, frames[0])
    expected = (int(ds.Rows), int(ds.Columns), int(ds.get("SamplesPerPixel", 1) or 1))
    if header is None:
        raise InputError("corrupt_dicom", "The compressed frame has no readable header.")
    if (header.rows, header.columns, header.components) != expected:
        raise InputError(
            "corrupt_dicom",
            f"The compressed frame declares {header.columns}x{header.rows} pixels with "
            f"{header.components} components; the DICOM header says {expected[1]}x{expected[0]} "
            f"with {expected[2]}.",
        )


def _is_encapsulated(transfer_syntax: UID) -> bool:
    try:
        return bool(transfer_syntax.is_encapsulated)
    except ValueError:  # not a transfer syntax pydicom knows: it cannot decode it either
        return False


def _decoder_available(transfer_syntax_uid: str) -> bool:
    try:
        return bool(get_decoder(transfer_syntax_uid).is_available)
    except Exception:  # unknown or malformed UID: nothing can decode it
        return False


def _echo_uid(uid: str) -> str:
    return uid if re.fullmatch(r"[0-9.]{1,64}", uid) else "(unrecognised UID)"


def _truncated(ds: Dataset) -> bool:
    """True if a top-level element still unparsed holds fewer bytes than its header declares."""
    for tag in list(ds.keys()):
        elem = ds.get_item(tag, keep_deferred=True)
        if (
            isinstance(elem, RawDataElement)
            and elem.length != _UNDEFINED_LENGTH
            and elem.value is not None
            and len(elem.value) < elem.length
        ):
            return True
    return False


def _check_tag(ds: Dataset, keyword: str, accepted: frozenset[str], code: str, wanted: str) -> None:
    value = str(ds.get(keyword, "") or "").strip().upper()
    if value and value not in accepted:
        raise InputError(
            code,
            f"{keyword} is {_echo(value)}; this model reads only {wanted} "
            f"(accepted: {', '.join(sorted(accepted))}, or the tag left empty).",
            422,
        )


def _echo(value: str) -> str:
    """Quote a code-string value in an error only if it looks like one (never free text)."""
    return value if _CODE_STRING.fullmatch(value) else "(unrecognised value)"


def _uid(ds: Dataset, keyword: str, warning: str) -> tuple[str | None, str | None]:
    """The UID if present and valid; an invalid one is dropped (never echoed) with ``warning``."""
    value = ds.get(keyword)
    if value is None or value == "":
        return None, None
    uid = valid_uid(value)
    return uid, None if uid is not None else warning


def _pixels(ds: Dataset, info: DicomInfo) -> npt.NDArray[np.float32]:
    if info.transfer_syntax_uid == RLELossless:
        # pylibjpeg-rle decodes into a buffer of Rows x Columns. When it refuses a frame, pydicom
        # falls back to its own decoder, which expands a whole segment first: replicate runs made a
        # 4 MB upload cost 280 MB (found by fuzzing). No fallback, then.
        ds.pixel_array_options(decoding_plugin="pylibjpeg")
    try:
        # pydicom >= 3 clears bits above BitsStored and sign-extends signed data.
        raw = np.asarray(ds.pixel_array)
    except (NotImplementedError, RuntimeError) as exc:
        # pydicom raises RuntimeError both when no plugin is installed and when one fails on the data.
        if _decoder_available(info.transfer_syntax_uid):
            raise InputError("corrupt_dicom", "The DICOM pixel data could not be decoded.") from exc
        raise InputError(
            "unsupported_transfer_syntax",
            f"Pixel data in transfer syntax {_echo_uid(info.transfer_syntax_uid)} cannot be decoded.",
            422,
        ) from exc
    except Exception as exc:  # struct.error from a bad offset table, ...
        raise InputError("corrupt_dicom", "The DICOM pixel data is truncated or corrupt.") from exc
    except BaseException as exc:
        # pyo3 decoders (pylibjpeg-rle) panic on some malformed streams; PanicException is a
        # BaseException, so without this a crafted upload escapes every `except Exception`.
        if type(exc).__name__ != "PanicException":
            raise
        raise InputError("corrupt_dicom", "The DICOM pixel data is truncated or corrupt.") from exc
    if raw.ndim != (3 if info.photometric_interpretation in _COLOUR else 2):
        raise InputError("corrupt_dicom", f"Unexpected pixel array shape {raw.shape}.")
    if info.photometric_interpretation in _COLOUR:
        # pydicom has already converted YBR to RGB.
        return rgb_luminance(raw)
    try:
        values = apply_modality_lut(raw, ds)
        if "WindowCenter" in ds or "VOILUTSequence" in ds:
            values = apply_voi_lut(values, ds, index=0)
    except Exception as exc:  # Window Width < 1, unknown VOI LUT Function, non-numeric DS values...
        raise InputError("corrupt_dicom", "The DICOM rescale or window attributes are invalid.") from exc
    plane = np.asarray(values, dtype=np.float32)
    if info.photometric_interpretation == "MONOCHROME1":
        # Inverted display (bright = low value). Negation suffices: intensity scale is normalised later.
        plane = -plane
    if not np.all(np.isfinite(plane)):
        raise InputError("corrupt_dicom", "The DICOM pixel values are not finite.")
    return np.ascontiguousarray(plane)
