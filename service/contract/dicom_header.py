"""Where a DICOM upload's dataset starts, in which encoding, and whether its metadata is within bounds.

Runs before pydicom reads a byte. pydicom parses every sequence it meets and its writer recurses
once per nesting level, so a 59 KB file whose PatientName was a sequence nested 400 deep grew the
service to 24 GB while a result object was written. Here the raw element stream is walked without
reading any value: nesting depth, element count and the bytes of all non-pixel values are counted
and refused past ``DecodeLimits`` (400), and an element whose value runs past the end of the file
is a truncated file (400 ``corrupt_dicom``).

Both kinds of upload are found here: a Part 10 file (128-byte preamble, ``DICM``, file meta group)
and a raw dataset as older modalities and archives still write them (no preamble, no file meta; its
transfer syntax is inferred from the first element: explicit VR when bytes 4-5 are a VR, implicit
otherwise, little endian).
"""

import struct
import zlib
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from service.contract.decoded import DecodeLimits
from service.contract.errors import InputError
from service.contract.sniff import DICOM_MAGIC, DICOM_MAGIC_OFFSET, LONG_VRS, VRS, is_part10

_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})  # (Float/Double Float) Pixel Data
_INFLATE_CHUNK = 1 << 20


@dataclass(frozen=True)
class DicomLayout:
    dataset_offset: int
    transfer_syntax: str | None  # None: a Part 10 file whose file meta names none (corrupt)
    has_file_meta: bool
    inferred: bool  # True for a raw dataset: the transfer syntax was guessed, not declared


@dataclass(frozen=True)
class HeaderSummary:
    elements: int
    depth: int
    value_bytes: int
    encapsulated_pixels: bool


def dicom_layout(data: bytes) -> DicomLayout:
    if is_part10(data):
        transfer_syntax, offset = _file_meta(data, DICOM_MAGIC_OFFSET + len(DICOM_MAGIC))
        return DicomLayout(offset, transfer_syntax, has_file_meta=True, inferred=False)
    if struct.unpack_from("<H", data)[0] == 0x0002:  # file meta without its preamble
        transfer_syntax, offset = _file_meta(data, 0)
        return DicomLayout(offset, transfer_syntax, has_file_meta=True, inferred=False)
    explicit = data[4:6] in VRS
    inferred = ExplicitVRLittleEndian if explicit else ImplicitVRLittleEndian
    return DicomLayout(0, str(inferred), has_file_meta=False, inferred=True)


def check_header(data: bytes, layout: DicomLayout, limits: DecodeLimits) -> HeaderSummary:
    """Walk the dataset's elements (values skipped, never read) and refuse what is out of bounds."""
    syntax = layout.transfer_syntax or str(ExplicitVRLittleEndian)
    reader: _Reader
    if syntax == DeflatedExplicitVRLittleEndian:
        reader = _Inflating(data, layout.dataset_offset)
    else:
        reader = _Reader(data, layout.dataset_offset)
    counter = _Counter(limits)
    walker = _Walker(
        reader, counter, little=syntax != ExplicitVRBigEndian, implicit=syntax == ImplicitVRLittleEndian
    )
    walker.dataset(end=None, depth=0)
    return HeaderSummary(counter.elements, counter.deepest, counter.value_bytes, walker.encapsulated_pixels)


def _truncated() -> InputError:
    return InputError("corrupt_dicom", "The DICOM file is truncated or its header is invalid.")


def _malformed(what: str) -> InputError:
    return InputError("corrupt_dicom", f"The DICOM header is malformed: {what}.")


def _file_meta(data: bytes, offset: int) -> tuple[str | None, int]:
    """The file meta group (explicit VR little endian): its transfer syntax and where it ends."""
    transfer_syntax, position = None, offset
    for _ in range(256):  # the group defines about a dozen elements
        if position + 8 > len(data) or struct.unpack_from("<H", data, position)[0] != 0x0002:
            return transfer_syntax, position
        element = struct.unpack_from("<H", data, position + 2)[0]
        vr = data[position + 4 : position + 6]
        if vr in LONG_VRS:
            if position + 12 > len(data):
                raise _truncated()
            length, start = struct.unpack_from("<I", data, position + 8)[0], position + 12
        else:
            length, start = struct.unpack_from("<H", data, position + 6)[0], position + 8
        if length == _UNDEFINED or start + length > len(data):
            raise _truncated()
        if element == 0x0010:
            transfer_syntax = data[start : start + length].rstrip(b"\0 ").decode("ascii", "replace")
        position = start + length
    raise _malformed("the file meta group has too many elements")


class _Reader:
    """Sequential access to the dataset bytes: read a few header bytes, skip over values."""

    def __init__(self, data: bytes, offset: int) -> None:
        self._data = data
        self.position = offset
        self._end = len(data)

    def read(self, size: int) -> bytes:
        chunk = self._data[self.position : self.position + size]
        self.position += len(chunk)
        return chunk

    def skip(self, size: int) -> None:
        if self.position + size > self._end:
            raise _truncated()
        self.position += size


class _Inflating(_Reader):
    """A deflated dataset, inflated a chunk at a time as it is walked; skipped values are dropped.

    The inflated size was already checked against the pixel budget (``_check_inflated_size``)."""

    def __init__(self, data: bytes, offset: int) -> None:
        super().__init__(b"", 0)
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._pending = data[offset:]
        self._buffer = b""

    def _fill(self, size: int) -> None:
        try:
            while len(self._buffer) < size and (self._pending or not self._inflater.eof):
                more = self._inflater.decompress(self._pending, _INFLATE_CHUNK)
                self._pending = self._inflater.unconsumed_tail
                if not more and not self._pending:
                    self._buffer += self._inflater.flush()
                    break
                self._buffer += more
        except zlib.error as exc:
            raise InputError("corrupt_dicom", "The deflated DICOM dataset is corrupt.") from exc

    def read(self, size: int) -> bytes:
        self._fill(size)
        chunk, self._buffer = self._buffer[:size], self._buffer[size:]
        self.position += len(chunk)
        return chunk

    def skip(self, size: int) -> None:
        while size > 0:
            step = min(size, _INFLATE_CHUNK)
            if len(self.read(step)) < step:
                raise _truncated()
            size -= step


class _Counter:
    def __init__(self, limits: DecodeLimits) -> None:
        self.limits = limits
        self.elements = 0
        self.value_bytes = 0
        self.deepest = 0

    def element(self) -> None:
        self.elements += 1
        if self.elements > self.limits.max_dicom_elements:
            raise InputError(
                "dicom_too_many_elements",
                f"The DICOM header holds more than {self.limits.max_dicom_elements} data elements "
                "(sequence items included).",
            )

    def values(self, size: int) -> None:
        self.value_bytes += size
        if self.value_bytes > self.limits.max_dicom_header_bytes:
            raise InputError(
                "dicom_header_too_large",
                f"The DICOM header's values (everything but the pixel data) exceed "
                f"{self.limits.max_dicom_header_bytes} bytes.",
            )

    def nest(self, depth: int) -> None:
        self.deepest = max(self.deepest, depth)
        if depth > self.limits.max_dicom_depth:
            raise InputError(
                "dicom_too_deep",
                f"The DICOM header nests sequences more than {self.limits.max_dicom_depth} deep.",
            )


class _Walker:
    """One encoding (byte order, VR form) of a dataset; an implicit-VR sequence inside an explicit
    dataset (VR UN, PS3.5 6.2.2) gets a walker of its own on the same reader."""

    def __init__(self, reader: _Reader, counter: _Counter, *, little: bool, implicit: bool) -> None:
        self.reader = reader
        self.counter = counter
        self.little = little
        self.implicit = implicit
        self._order = "<" if little else ">"
        self.encapsulated_pixels = False

    def _unpack(self, fmt: str, data: bytes) -> int:
        value: int = struct.unpack(self._order + fmt, data)[0]
        return value

    def _tag(self, head: bytes) -> int:
        group, element = struct.unpack(self._order + "HH", head[:4])
        return int(group) << 16 | int(element)

    def dataset(self, end: int | None, depth: int) -> None:
        """Elements until ``end`` (a defined length), an item delimiter (undefined) or end of file."""
        while True:
            if end is not None:
                if self.reader.position == end:
                    return
                if self.reader.position > end:
                    raise _malformed("an element overruns the item holding it")
            head = self.reader.read(8)
            if not head and end is None and depth == 0:
                return  # end of file
            if len(head) < 8:
                raise _truncated()
            tag = self._tag(head)
            if tag == _ITEM_END:
                if end is None and depth > 0:
                    return
                raise _malformed("an item delimiter outside an item")
            if tag >> 16 == 0xFFFE:
                raise _malformed("a sequence item outside a sequence")
            self.counter.element()
            self._element(tag, head, depth)

    def _element(self, tag: int, head: bytes, depth: int) -> None:
        if self.implicit:
            length, vr = self._unpack("I", head[4:8]), _dictionary_vr(tag)
        else:
            vr = head[4:6].decode("latin-1")
            if head[4:6] in LONG_VRS:
                extra = self.reader.read(4)
                if len(extra) < 4:
                    raise _truncated()
                length = self._unpack("I", extra)
            else:
                length = self._unpack("H", head[6:8])
        if tag in _PIXEL_TAGS and depth == 0:
            self._pixel_data(length)
        elif vr == "SQ" or (self.implicit and length == _UNDEFINED):
            self._sequence(length, depth + 1, implicit=self.implicit)
        elif vr == "UN" and (length == _UNDEFINED or _dictionary_vr(tag) == "SQ"):
            # pydicom reads both as an implicit VR little endian sequence.
            self._sequence(length, depth + 1, implicit=True)
        elif length == _UNDEFINED:
            self._fragments(count_values=True)  # OB/OW of undefined length: items of bytes
        else:
            self.counter.values(length)
            self.reader.skip(length)

    def _pixel_data(self, length: int) -> None:
        if length == _UNDEFINED:
            self.encapsulated_pixels = True
            self._fragments(count_values=False)
        else:
            self.reader.skip(length)

    def _fragments(self, *, count_values: bool) -> None:
        while True:
            head = self.reader.read(8)
            if len(head) < 8:
                raise _truncated()
            tag, length = self._tag(head), self._unpack("I", head[4:8])
            if tag == _SEQUENCE_END:
                return
            if tag != _ITEM or length == _UNDEFINED:
                raise _malformed("an encapsulated value holds something other than items")
            self.counter.element()
            if count_values:
                self.counter.values(length)
            self.reader.skip(length)

    def _sequence(self, length: int, depth: int, *, implicit: bool) -> None:
        self.counter.nest(depth)
        inner = self
        if implicit != self.implicit:
            inner = _Walker(self.reader, self.counter, little=True, implicit=True)
        end = None if length == _UNDEFINED else self.reader.position + length
        while True:
            if end is not None:
                if self.reader.position == end:
                    return
                if self.reader.position > end:
                    raise _malformed("an item overruns the sequence holding it")
            head = self.reader.read(8)
            if len(head) < 8:
                raise _truncated()
            tag, item_length = inner._tag(head), inner._unpack("I", head[4:8])
            if tag == _SEQUENCE_END and end is None:
                return
            if tag != _ITEM:
                raise _malformed("a sequence holds something other than items")
            self.counter.element()
            item_end = None if item_length == _UNDEFINED else self.reader.position + item_length
            if item_end is not None and end is not None and item_end > end:
                raise _malformed("an item overruns the sequence holding it")
            inner.dataset(item_end, depth)


def _dictionary_vr(tag: int) -> str | None:
    try:
        return str(dictionary_VR(tag))
    except KeyError:  # private or unknown: pydicom reads it as UN bytes
        return None
