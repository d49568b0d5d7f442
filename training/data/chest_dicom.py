"""The one builder of synthetic chest DICOM films, shared by the hospital films, the benchmarks and
the tests' fixtures.

Torch-free on purpose (numpy and pydicom only): ``tests/factories`` imports it in the check that the
service runs without torch.
"""

import io
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid


def stored_pixels(
    plane: npt.NDArray[np.floating], bits_stored: int, photometric: str, bits_allocated: int = 16
) -> npt.NDArray[np.unsignedinteger]:
    """``plane`` (in [0, 1], brighter = denser) quantised to ``bits_stored`` bits; MONOCHROME1 inverted."""
    maximum = (1 << bits_stored) - 1
    dtype: type[np.unsignedinteger] = np.uint8 if bits_allocated == 8 else np.uint16
    stored: npt.NDArray[np.unsignedinteger] = np.round(plane * maximum).astype(dtype)
    if photometric == "MONOCHROME1":
        stored = (maximum - stored).astype(dtype)
    return stored


def part10_dataset(sop_class: UID) -> Dataset:
    """An empty dataset whose file meta names ``sop_class``, a new instance UID and explicit VR LE."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    return ds


def chest_dataset(
    plane: npt.NDArray[np.floating],
    *,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    modality: str | None = "DX",
    bits_allocated: int = 16,
    sop_class: UID = DigitalXRayImageStorageForPresentation,
    view_position: str | None = "PA",
    study_uid: str | None = None,
    series_uid: str | None = None,
    header: Mapping[str, object] | None = None,
) -> Dataset:
    """An uncompressed chest film of ``plane`` (in [0, 1]); ``header`` adds attributes (identity...).

    Study and series UIDs are new unless given; ``bits_allocated`` is 16 or 8 (then ``bits_stored``
    must be at most 8).
    """
    stored = stored_pixels(plane, bits_stored, photometric, bits_allocated)
    ds = part10_dataset(sop_class)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    if modality is not None:
        ds.Modality = modality
    ds.BodyPartExamined = "CHEST"
    if view_position is not None:
        ds.ViewPosition = view_position
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_allocated, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    for keyword, value in (header or {}).items():
        setattr(ds, keyword, value)
    ds.PixelData = stored.tobytes()
    return ds


def part10_bytes(ds: Dataset, transfer_syntax: UID = ExplicitVRLittleEndian) -> bytes:
    """``ds`` as a Part-10 file (preamble + 'DICM'), its pixels compressed to ``transfer_syntax``."""
    if transfer_syntax != ExplicitVRLittleEndian:
        ds.compress(transfer_syntax)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
