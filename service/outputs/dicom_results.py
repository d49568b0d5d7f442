"""DICOM result objects for a DICOM upload: the Grad-CAM overlay and the classification, as new instances
in the source's study.

* :func:`build_secondary_capture`: the overlay as a Secondary Capture Image (RGB, 8-bit, uncompressed),
  built with pydicom. highdicom's ``SCImage`` is not used because it insists on a patient orientation
  we cannot always know, forces ConversionType ``DI`` and feeds patient values through validators that
  quote them in warnings.
* :func:`build_structured_report`: the result as a Comprehensive SR holding a TID 1500 Measurement
  Report, built with highdicom (whose template constructors check the content tree).

Both return DICOM Part 10 bytes (128-byte preamble, ``DICM``, Explicit VR Little Endian). Each object
opens a new series in the source's study, copies the Patient and Study attributes (an explicit list,
each rebuilt from a plain value of its standard VR and bounded length, never the source's element, so
hostile metadata such as a PatientName encoded as a deep sequence never reaches the writer), and
references the source instance (SC: Source Image Sequence; SR: Current Requested Procedure Evidence
Sequence and IMAGE content items).

Privacy: nothing here logs, and no error message quotes a value read from the file. Patient values
are copied as data elements and never handed to highdicom, whose name checks warn with the name in
the message; its instance-UID INFO records are silenced below. Element values are decoded under the
contract's ``reading_validation_mode = IGNORE`` (set when ``service.contract`` is imported), so pydicom
does not warn with them either.

Codes (all in the SR; the private scheme is declared in its Coding Scheme Identification Sequence):

============================ ============================================================
Concept                      Code
============================ ============================================================
document title               (126000, DCM, "Imaging Measurement Report")
procedure reported           (399208008, SCT, "Plain chest X-ray")
finding: class PNEUMONIA     (233604007, SCT, "Pneumonia")
finding: class NORMAL        (17621005, SCT, "Normal")
finding: any other class     (<CLASS NAME, upper case>, 99CXR, "<class name>")  private
probability of a class       (122157, DCM, "Probability"), unit (1, UCUM, "no units")
decision threshold           (122411, DCM, "Threshold Value"), unit (1, UCUM, "no units")
model name / version         TID 4019 Algorithm Identification: (111001, DCM) / (111003, DCM)
triage level                 (TRIAGE-LEVEL, 99CXR, "Triage level")                 private
  values                     (URGENT, 99CXR, "Urgent"), (ROUTINE, 99CXR, "Routine"),
                             any other level: (<LEVEL, upper case>, 99CXR, "<level>") private
decision-support statement   (121106, DCM, "Comment")
============================ ============================================================
"""

import io
import logging
import re
from collections.abc import Iterable
from datetime import datetime

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
from highdicom.sr import CodedConcept
from PIL import Image
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from service.contract import DecodeLimits, InputError, SourceFormat
from service.contract.dicom import read_dicom
from service.contract.sniff import sniff_format
from service.contract.uids import valid_uid
from service.outputs.png import encode_png

# highdicom logs the source's SOP Instance UID at INFO while building an SR; no DICOM value may reach
# the service's logs, so only its warnings and errors are let through.
logging.getLogger("highdicom").setLevel(logging.WARNING)

__all__ = ["build_secondary_capture", "build_structured_report", "secondary_capture_png"]

MANUFACTURER = "cxr-triage"
SC_SERIES_NUMBER = 9901
SR_SERIES_NUMBER = 9902
PRIVATE_SCHEME = "99CXR"
DISCLAIMER = "Decision support only: not a diagnosis. Every film must still be read by a radiologist."

# Patient and General Study attributes copied verbatim (where present) into every result object.
PATIENT_STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyID",
    "StudyDescription",
)
# Type 2 attributes of those modules: present in the result even when the source lacks them (empty).
_TYPE2_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyID",
)
_LO_MAX = 64  # Long String
# Longest value copied from the source (a PN of three 64-character groups fits); longer ones are
# left out of the result rather than cut, since a cut name or ID would be a different one.
_MAX_COPIED_CHARS = 256
_MAX_CHARSET_VALUES = 3  # ISO 2022 code extensions: a default set and two more
_ST_MAX = 1024  # Short Text
_CODE_VALUE_SAFE = re.compile(r"[^A-Z0-9_.-]+")

_KNOWN_FINDINGS = {
    "PNEUMONIA": CodedConcept("233604007", "SCT", "Pneumonia"),
    "NORMAL": CodedConcept("17621005", "SCT", "Normal"),
}
PROCEDURE_REPORTED = CodedConcept("399208008", "SCT", "Plain chest X-ray")
TRIAGE_LEVEL = CodedConcept("TRIAGE-LEVEL", PRIVATE_SCHEME, "Triage level")
_TRIAGE_VALUES = {
    "URGENT": CodedConcept("URGENT", PRIVATE_SCHEME, "Urgent"),
    "ROUTINE": CodedConcept("ROUTINE", PRIVATE_SCHEME, "Routine"),
}
# TID 1500's document-level "Qualitative Evaluations" container, which holds CODE and TEXT items.
QUALITATIVE_EVALUATIONS = CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")


def build_secondary_capture(
    source: bytes,
    overlay_png: bytes,
    *,
    model_name: str,
    model_version: str,
    class_name: str,
    limits: DecodeLimits | None = None,
) -> bytes:
    """The Grad-CAM overlay PNG as a Secondary Capture Image in the source's study, new series."""
    src = _read_source(source, limits)
    study_uid, sop_class_uid, sop_instance_uid = _required_uids(src)
    pixels = _rgb_pixels(overlay_png)
    statement = (
        f"Grad-CAM overlay for class {class_name} from model {model_name} version {model_version}: "
        "the class activation map alpha-blended over the display-stretched, resized source image. "
        f"{DISCLAIMER}"
    )

    ds = _new_instance(SecondaryCaptureImageStorage, texts=(model_name, model_version, class_name), src=src)
    _copy_patient_and_study(src, ds)
    ds.StudyInstanceUID = study_uid
    # General Series / SC Equipment / General Equipment
    ds.Modality = "OT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = SC_SERIES_NUMBER
    ds.SeriesDescription = _lo(f"Grad-CAM {class_name} - {model_name} {model_version}")
    body_part = _copyable(src, "BodyPartExamined")
    if body_part is not None:
        ds.BodyPartExamined = body_part
    ds.ConversionType = "WSD"  # workstation: a derived image drawn by software
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = _lo(model_name)
    ds.SoftwareVersions = _lo(f"{model_name} {model_version}")
    ds.SecondaryCaptureDeviceManufacturer = MANUFACTURER
    ds.SecondaryCaptureDeviceManufacturerModelName = _lo(model_name)
    ds.SecondaryCaptureDeviceSoftwareVersions = _lo(model_version)
    # General Image / SC Image: the overlay is the film resized, so the film's orientation still holds.
    ds.InstanceNumber = 1
    ds.PatientOrientation = _copyable(src, "PatientOrientation", max_values=2)
    ds.ContentDate, ds.ContentTime = ds.InstanceCreationDate, ds.InstanceCreationTime
    ds.DateOfSecondaryCapture, ds.TimeOfSecondaryCapture = ds.ContentDate, ds.ContentTime
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.DerivationDescription = statement[:_ST_MAX]
    ds.ImageComments = statement
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    _reference_source(ds, src, sop_class_uid, sop_instance_uid)
    _set_rgb_pixels(ds, pixels)
    return _part10(ds)


def _reference_source(ds: Dataset, src: Dataset, sop_class_uid: str, sop_instance_uid: str) -> None:
    """General Reference and Common Instance Reference: the source image and its series."""
    purpose = _code_item(codes.DCM.SourceImageForImageProcessingOperation)
    ds.SourceImageSequence = [_sop_reference(sop_class_uid, sop_instance_uid, purpose=purpose)]
    source_series = valid_uid(_readable_value(src, "SeriesInstanceUID"))
    if source_series:
        series = Dataset()
        series.SeriesInstanceUID = source_series
        series.ReferencedInstanceSequence = [_sop_reference(sop_class_uid, sop_instance_uid)]
        ds.ReferencedSeriesSequence = [series]


def _set_rgb_pixels(ds: Dataset, pixels: npt.NDArray[np.uint8]) -> None:
    """Image Pixel: interleaved RGB (PlanarConfiguration 0), 8 bits, unsigned."""
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OB"


def secondary_capture_png(sc: bytes) -> bytes:
    """The overlay of a Secondary Capture this module built, back as the RGB PNG it was built from.

    Only the layout ``_set_rgb_pixels`` writes is read (8-bit interleaved RGB, uncompressed): this
    renders our own results for viewing, it is not a general DICOM decoder. ``ValueError`` otherwise.
    """
    ds = pydicom.dcmread(io.BytesIO(sc))
    layout = (
        ds.get("SamplesPerPixel"),
        ds.get("PhotometricInterpretation"),
        ds.get("BitsAllocated"),
        ds.get("PlanarConfiguration"),
        str(ds.file_meta.get("TransferSyntaxUID", "")),
    )
    if layout != (3, "RGB", 8, 0, ExplicitVRLittleEndian):
        raise ValueError("not a Secondary Capture in the layout this service writes")
    rows, columns = int(ds.Rows), int(ds.Columns)
    pixels = np.frombuffer(ds.PixelData, dtype=np.uint8)
    if pixels.size < rows * columns * 3:
        raise ValueError("the Secondary Capture's pixel data is shorter than its size")
    rgb = pixels[: rows * columns * 3].reshape(rows, columns, 3)
    return encode_png(rgb)  # the same encoder as the overlay it was built from


def build_structured_report(
    source: bytes,
    *,
    probabilities: dict[str, float],
    predicted_class: str,
    triage_level: str | None,
    threshold: float | None,
    positive_class: str | None,
    model_name: str,
    model_version: str,
    limits: DecodeLimits | None = None,
) -> bytes:
    """The classification as a Comprehensive SR (TID 1500) in the source's study, new series.

    One TID 1501 measurement group per class (finding = the class, its probability, the algorithm,
    the source image; the positive class's group also holds the decision threshold), then a
    document-level Qualitative Evaluations container with the predicted finding, the triage level
    and the decision-support statement.
    """
    if predicted_class not in probabilities:
        raise ValueError("predicted_class is not one of the classes in probabilities")
    if threshold is not None and positive_class not in probabilities:
        raise ValueError("a threshold needs a positive_class that is one of the classes in probabilities")
    src = _read_source(source, limits)
    study_uid, sop_class_uid, sop_instance_uid = _required_uids(src)
    series_uid = valid_uid(_readable_value(src, "SeriesInstanceUID")) or ""
    if not series_uid:
        raise InputError(
            "dicom_output_unavailable",
            "The DICOM upload has no Series Instance UID, so a report cannot reference it.",
            422,
        )
    texts = (model_name, model_version, predicted_class, triage_level or "", *probabilities)
    algorithm = hd.sr.AlgorithmIdentification(name=model_name, version=model_version)
    source_image = hd.sr.SourceImageForMeasurementGroup(sop_class_uid, sop_instance_uid)
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_device_context=_device(model_name, model_version)
        ),
        procedure_reported=PROCEDURE_REPORTED,
        imaging_measurements=_measurement_groups(
            probabilities, threshold, positive_class, algorithm, source_image
        ),
    )
    report[0].ContentSequence.append(
        _qualitative_evaluations(predicted_class, triage_level, model_name, model_version)
    )
    evidence = _evidence(study_uid, series_uid, sop_class_uid, sop_instance_uid)
    sr = _comprehensive_sr(report[0], evidence, model_name, model_version)
    _set_character_set(sr, src, texts)
    _copy_patient_and_study(src, sr)
    return _part10(sr)


def _measurement_groups(
    probabilities: dict[str, float],
    threshold: float | None,
    positive_class: str | None,
    algorithm: hd.sr.AlgorithmIdentification,
    source_image: hd.sr.SourceImageForMeasurementGroup,
) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    """One TID 1501 group per class: its probability, and the threshold in the positive class's group."""
    groups = []
    for class_name, probability in probabilities.items():
        measurements = [
            hd.sr.Measurement(name=codes.DCM.Probability, value=float(probability), unit=codes.UCUM.NoUnits)
        ]
        if threshold is not None and class_name == positive_class:
            measurements.append(
                hd.sr.Measurement(
                    name=codes.DCM.ThresholdValue, value=float(threshold), unit=codes.UCUM.NoUnits
                )
            )
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=generate_uid(), identifier=_lo(f"{class_name} probability")
                ),
                finding_type=_finding_code(class_name),
                algorithm_id=algorithm,
                measurements=measurements,
                source_images=[source_image],
            )
        )
    return groups


def _device(model_name: str, model_version: str) -> hd.sr.ObserverContext:
    """The observer: this software as a device, identified by a UID derived from name and version."""
    return hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=[MANUFACTURER, model_name, model_version]),
            name=MANUFACTURER,
            manufacturer_name=MANUFACTURER,
            model_name=model_name,
        ),
    )


def _evidence(study_uid: str, series_uid: str, sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    """The source as highdicom's evidence: UIDs and empty type-2 elements only.

    highdicom copies patient values from the evidence through its validators, which warn with the
    value in the message: it gets the UIDs only, and the patient/study elements are copied after.
    """
    evidence = Dataset()
    evidence.StudyInstanceUID = study_uid
    evidence.SeriesInstanceUID = series_uid
    evidence.SOPClassUID = sop_class_uid
    evidence.SOPInstanceUID = sop_instance_uid
    for keyword in _TYPE2_KEYWORDS:
        setattr(evidence, keyword, None)
    return evidence


def _comprehensive_sr(
    content: Dataset, evidence: Dataset, model_name: str, model_version: str
) -> hd.sr.ComprehensiveSR:
    """The SR document itself: complete, PRELIMINARY and unverified, as a radiologist must still read."""
    try:
        return hd.sr.ComprehensiveSR(
            evidence=[evidence],
            content=content,
            series_instance_uid=generate_uid(),
            series_number=SR_SERIES_NUMBER,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=_lo(model_name),
            software_versions=_lo(f"{model_name} {model_version}"),
            series_description=_lo(f"AI triage result - {model_name} {model_version}"),
            is_complete=True,
            is_final=False,  # PRELIMINARY: a radiologist must still read the film
            is_verified=False,
            coding_schemes=[
                hd.coding_schemes.CodingSchemeIdentificationItem(
                    designator=PRIVATE_SCHEME,
                    name="cxr-triage private codes",
                    responsible_organization=MANUFACTURER,
                )
            ],
        )
    except KeyError as exc:  # highdicom looks the source's SOP class up in its IOD tables
        raise InputError(
            "dicom_output_unavailable",
            "The DICOM upload's SOP Class is not a standard image storage class; no report can be made.",
            422,
        ) from exc


def _read_source(source: bytes, limits: DecodeLimits | None) -> Dataset:
    """The source's header under the contract's metadata limits (depth, elements, bytes)."""
    try:
        is_dicom = sniff_format(source) is SourceFormat.DICOM
    except InputError:
        is_dicom = False
    if not is_dicom:
        raise InputError(
            "dicom_output_unavailable", "DICOM results can only be made for a DICOM upload.", 422
        )
    return read_dicom(source, limits or DecodeLimits(), stop_before_pixels=True)


def _source_uid(src: Dataset, keyword: str, meta_keyword: str) -> str | None:
    meta = getattr(src, "file_meta", Dataset())
    return valid_uid(_readable_value(src, keyword)) or valid_uid(meta.get(meta_keyword))


def _required_uids(src: Dataset) -> tuple[str, str, str]:
    """(study, SOP class, SOP instance) UIDs of the source; the file meta stands in for the dataset.
    Each must be one valid UID (PS3.5 9.1): a result object must not carry the source's junk."""
    study = valid_uid(_readable_value(src, "StudyInstanceUID"))
    sop_class = _source_uid(src, "SOPClassUID", "MediaStorageSOPClassUID")
    sop_instance = _source_uid(src, "SOPInstanceUID", "MediaStorageSOPInstanceUID")
    if not (study and sop_class and sop_instance):
        raise InputError(
            "dicom_output_unavailable",
            "The DICOM upload lacks a valid Study Instance UID, SOP Class UID or SOP Instance UID, "
            "so no result object can reference it.",
            422,
        )
    return study, sop_class, sop_instance


def _rgb_pixels(png: bytes) -> npt.NDArray[np.uint8]:
    with Image.open(io.BytesIO(png)) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb)


def _new_instance(sop_class_uid: str, *, texts: Iterable[str], src: Dataset) -> Dataset:
    """An empty Part 10 dataset of ``sop_class_uid``: file meta, SOP Common, creation date/time."""
    sop_instance_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    _set_character_set(ds, src, texts)
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    now = datetime.now()
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S.%f")
    return ds


def _set_character_set(ds: Dataset, src: Dataset, texts: Iterable[str]) -> None:
    """Keep the source's character set when our own text is ASCII; otherwise use UTF-8.

    Copied elements hold decoded strings, so pydicom re-encodes them in whichever set is chosen.
    """
    if all(text.isascii() for text in texts):
        charset = _copyable(src, "SpecificCharacterSet", max_values=_MAX_CHARSET_VALUES)
        if charset is not None:
            ds.SpecificCharacterSet = charset
    else:
        ds.SpecificCharacterSet = "ISO_IR 192"


def _readable_element(src: Dataset, keyword: str) -> DataElement | None:
    """``src[keyword]`` with its value converted, or None when absent or unreadable.

    pydicom converts a raw element on first access and raises whatever its malformed bytes provoke
    (an unknown VR 'Lz' raised NotImplementedError: found by the fuzzer). Such a value is not copied,
    like any other we cannot rebuild: it must never cost a 5xx."""
    if keyword not in src:
        return None
    try:
        element = src[keyword]
        _ = element.value
    except Exception:
        return None
    return element


def _readable_value(src: Dataset, keyword: str) -> object:
    """The value of ``keyword``, or None when absent or unreadable (see ``_readable_element``)."""
    element = _readable_element(src, keyword)
    return None if element is None else element.value


def _copyable(src: Dataset, keyword: str, *, max_values: int = 1) -> str | list[str] | None:
    """The value of ``keyword`` rebuilt from plain strings, if the source holds it with its standard
    VR, at most ``max_values`` values and ``_MAX_COPIED_CHARS`` characters; otherwise None.

    Only these rebuilt values reach a result object, never the source's element: a PatientName
    encoded as a sequence, a UID holding a name, a 1 MB Study Description stay behind."""
    element = _readable_element(src, keyword)
    if element is None or dictionary_VR(keyword) != element.VR or element.VR == "SQ":
        return None
    value = element.value
    values = list(value) if isinstance(value, MultiValue) else [value]
    if not values or len(values) > max_values:
        return None
    texts = ["" if item is None else str(item) for item in values]
    if sum(len(text) for text in texts) > _MAX_COPIED_CHARS:
        return None
    if element.VR == "UI" and not all(valid_uid(text) for text in texts if text):
        return None
    return texts[0] if max_values == 1 else texts


def _copy_patient_and_study(src: Dataset, ds: Dataset) -> None:
    for keyword in _TYPE2_KEYWORDS:
        if keyword not in ds:
            setattr(ds, keyword, None)
    for keyword in PATIENT_STUDY_KEYWORDS:
        value = _copyable(src, keyword)
        if value is not None:
            setattr(ds, keyword, value)


def _sop_reference(sop_class_uid: str, sop_instance_uid: str, *, purpose: Dataset | None = None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class_uid
    item.ReferencedSOPInstanceUID = sop_instance_uid
    if purpose is not None:
        item.PurposeOfReferenceCodeSequence = [purpose]
    return item


def _code_item(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


def _private_code(name: str) -> CodedConcept:
    """A 99CXR code for a free-text label: upper-cased value (LongCodeValue past 16 characters)."""
    value = _CODE_VALUE_SAFE.sub("_", name.strip().upper()).strip("_") or "UNNAMED"
    return CodedConcept(value, PRIVATE_SCHEME, name.strip()[:_LO_MAX] or value)


def _finding_code(class_name: str) -> CodedConcept:
    return _KNOWN_FINDINGS.get(class_name.strip().upper()) or _private_code(class_name)


def _qualitative_evaluations(
    predicted_class: str, triage_level: str | None, model_name: str, model_version: str
) -> hd.sr.ContainerContentItem:
    container = hd.sr.ContainerContentItem(
        name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    items: list[hd.sr.ContentItem] = [
        hd.sr.CodeContentItem(
            name=codes.DCM.Finding,
            value=_finding_code(predicted_class),
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
    ]
    if triage_level is not None:
        level = _TRIAGE_VALUES.get(triage_level.strip().upper()) or _private_code(triage_level)
        items.append(
            hd.sr.CodeContentItem(
                name=TRIAGE_LEVEL, value=level, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
            )
        )
    items.append(
        hd.sr.TextContentItem(
            name=codes.DCM.Comment,
            value=f"Result of model {model_name} version {model_version}. {DISCLAIMER}",
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
    )
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container


def _lo(text: str) -> str:
    """A Long String value: no backslash (the value separator) or control characters, 64 at most."""
    cleaned = "".join(" " if ord(char) < 32 else char for char in text.replace("\\", "/"))
    return cleaned.strip()[:_LO_MAX]


def _part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
