"""The size a compressed DICOM frame claims in its own header, read before any decoder runs.

The JPEG, JPEG-LS and JPEG 2000 decoders size their output from the codestream, not from Rows and
Columns: a 3 KB JPEG-LS frame claiming 12000 x 12000 inside a 40 x 32 DICOM was decoded in full
(680 MB) before pydicom noticed the mismatch. Reading the header first costs a few dozen bytes.
"""

from dataclasses import dataclass

from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

JPEG_FAMILY = frozenset(
    {JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless}
)
J2K_FAMILY = frozenset({JPEG2000Lossless, JPEG2000, HTJ2KLossless, HTJ2KLosslessRPCL, HTJ2K})
HEADER_CHECKED = JPEG_FAMILY | J2K_FAMILY
# Encapsulated syntaxes whose decoded size is known before decoding: RLE needs no header check,
# because its decoder writes into a buffer sized from Rows and Columns.
BOUNDED_OUTPUT = HEADER_CHECKED | {RLELossless}

_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"  # also JPEG-LS's; a DICOM fragment may add one zero byte of padding after it
# SOF0-SOF15 minus DHT (C4), JPG (C8) and DAC (CC), plus SOF55 (F7), JPEG-LS's frame header, and DHP
# (DE): a hierarchical JPEG's whole size, which is what its decoder allocates whatever its frames say.
_SIZE_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7, 0xDE}
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: no length field
_END_OR_SCAN = frozenset({0xD9, 0xDA})  # EOI, SOS: no frame header can follow
_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
_JP2_SIGNATURE = b"\x00\x00\x00\x0c\x6a\x50\x20\x20"
_SIZ_BYTES = 42  # SOC, SIZ marker, Lsiz ... Csiz


@dataclass(frozen=True)
class FrameHeader:
    rows: int
    columns: int
    components: int


def frame_header(transfer_syntax: UID, frame: bytes) -> FrameHeader | None:
    """The frame's declared size, or None if its header cannot be found (then it cannot be trusted)."""
    if transfer_syntax in JPEG_FAMILY:
        return _jpeg_header(frame)
    if transfer_syntax in J2K_FAMILY:
        return _j2k_header(frame)
    return None


def _jpeg_header(frame: bytes) -> FrameHeader | None:
    """The first SOFn, SOF55 (JPEG-LS) or DHP: each holds precision, rows, columns, components."""
    if not frame.startswith(_SOI):
        return None
    offset = len(_SOI)
    while offset + 4 <= len(frame):
        if frame[offset] != 0xFF:
            return None
        marker = frame[offset + 1]
        if marker == 0xFF:  # fill byte before a marker
            offset += 1
            continue
        if marker in _STANDALONE_MARKERS:
            offset += 2
            continue
        if marker in _END_OR_SCAN:
            return None
        if marker in _SIZE_MARKERS:
            if offset + 10 > len(frame):
                return None
            return FrameHeader(
                rows=int.from_bytes(frame[offset + 5 : offset + 7], "big"),
                columns=int.from_bytes(frame[offset + 7 : offset + 9], "big"),
                components=frame[offset + 9],
            )
        offset += 2 + int.from_bytes(frame[offset + 2 : offset + 4], "big")
    return None


def _j2k_header(frame: bytes) -> FrameHeader | None:
    """SIZ, which must follow SOC directly; a JP2 wrapper (not DICOM-conformant, but written by some
    encoders) is skipped by finding the codestream inside it."""
    start = frame.find(_J2K_SOC_SIZ) if frame.startswith(_JP2_SIGNATURE) else 0
    if start < 0 or frame[start : start + 4] != _J2K_SOC_SIZ or len(frame) < start + _SIZ_BYTES:
        return None

    def u32(at: int) -> int:
        return int.from_bytes(frame[start + at : start + at + 4], "big")

    # Image area is (Xsiz - XOsiz) x (Ysiz - YOsiz); a negative one is reported as is and refused.
    return FrameHeader(
        rows=u32(12) - u32(20),
        columns=u32(8) - u32(16),
        components=int.from_bytes(frame[start + 40 : start + 42], "big"),
    )
