"""DICOM result objects: the Grad-CAM overlay as Secondary Capture, the result as a Comprehensive SR.

Every object is built and read back with pydicom's reading and writing validation set to RAISE, and
every element is decoded, so a value that breaks its VR (length, characters, format) fails the test.
"""

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
import pydicom.config
import pytest
from highdicom.sr import CodedConcept
from highdicom.sr.utils import find_content_items
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import (
    UID,
    ComprehensiveSRStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
)

from service.contract import InputError
from service.outputs.dicom_results import (
    PATIENT_STUDY_KEYWORDS,
    PRIVATE_SCHEME,
    build_secondary_capture,
    build_structured_report,
    secondary_capture_png,
)
from service.outputs.overlay import render_overlay
from tests.factories import (
    FAKE_PHI_FRAGMENTS,
    chest_like,
    dicom_bytes,
    dicom_dataset,
    nested_patient_name_dicom,
    png_bytes,
)

MODEL = "cxr-pneumonia"
VERSION = "20261122.1"
PROBABILITIES = {"NORMAL": 0.125, "PNEUMONIA": 0.875}
THRESHOLD = 0.518
PNEUMONIA = CodedConcept("233604007", "SCT", "Pneumonia")
NORMAL = CodedConcept("17621005", "SCT", "Normal")
QUALITATIVE_EVALUATIONS = CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
TRIAGE_LEVEL = CodedConcept("TRIAGE-LEVEL", PRIVATE_SCHEME, "Triage level")
SOURCE_EXTRAS = {
    "PatientSex": "F",
    "StudyTime": "101500",
    "AccessionNumber": "ACC-0042",
    "ReferringPhysicianName": "Referrer^Rita",
    "StudyID": "S42",
    "PatientOrientation": ["P", "F"],
}


@contextmanager
def strict_dicom() -> Iterator[None]:
    """pydicom raises on any invalid value it reads or writes; the previous modes come back after."""
    settings = pydicom.config.settings
    saved = settings.reading_validation_mode, settings.writing_validation_mode
    settings.reading_validation_mode = pydicom.config.RAISE
    settings.writing_validation_mode = pydicom.config.RAISE
    try:
        yield
    finally:
        settings.reading_validation_mode, settings.writing_validation_mode = saved


@contextmanager
def lenient_dicom() -> Iterator[None]:
    """pydicom writes invalid values as they are, as a hostile client's software would."""
    settings = pydicom.config.settings
    saved = settings.writing_validation_mode
    settings.writing_validation_mode = pydicom.config.IGNORE
    try:
        yield
    finally:
        settings.writing_validation_mode = saved


def read_strict(data: bytes) -> Dataset:
    """Parse Part 10 bytes (preamble and 'DICM' required: no ``force``) and decode every element."""
    with strict_dicom():
        ds = pydicom.dcmread(io.BytesIO(data))
        for _ in ds.iterall():
            pass
    return ds


def source_dataset(**extras: object) -> Dataset:
    ds = dicom_dataset(chest_like(96, 80, seed=3))
    for keyword, value in {**SOURCE_EXTRAS, **extras}.items():
        setattr(ds, keyword, value)
    return ds


def structured_report(
    source: bytes,
    *,
    probabilities: dict[str, float] = PROBABILITIES,
    predicted_class: str = "PNEUMONIA",
    triage_level: str | None = "urgent",
    threshold: float | None = THRESHOLD,
    positive_class: str | None = "PNEUMONIA",
    model_name: str = MODEL,
    strict: bool = True,
) -> bytes:
    """The SR, built with pydicom validating everything it reads and writes; ``strict=False`` for a
    hostile source, which the service reads as it does in production (reading validation off)."""
    with strict_dicom() if strict else contextlib.nullcontext():
        return build_structured_report(
            source,
            probabilities=probabilities,
            predicted_class=predicted_class,
            triage_level=triage_level,
            threshold=threshold,
            positive_class=positive_class,
            model_name=model_name,
            model_version=VERSION,
        )


def measurement_groups(data: bytes) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    """The TID 1501 groups, read back through highdicom's own SR parser."""
    document = hd.sr.srread(io.BytesIO(data))
    assert isinstance(document, hd.sr.ComprehensiveSR)
    assert isinstance(document.content, hd.sr.MeasurementReport)
    return document.content.get_image_measurement_groups()


def png_pixels(png: bytes) -> npt.NDArray[np.uint8]:
    with Image.open(io.BytesIO(png)) as image:
        assert image.mode == "RGB"
        return np.asarray(image, dtype=np.uint8)


@pytest.fixture(scope="module")
def source() -> Dataset:
    return source_dataset()


@pytest.fixture(scope="module")
def source_bytes(source: Dataset) -> bytes:
    return dicom_bytes(source)


@pytest.fixture(scope="module")
def overlay_png() -> bytes:
    film = chest_like(96, 80, seed=3).astype(np.float32)
    yy, xx = np.mgrid[0:7, 0:7]
    cam = np.exp(-((yy - 2.0) ** 2 + (xx - 4.0) ** 2) / 4.0).astype(np.float32)
    png, width, height = render_overlay(film, cam, 256)
    assert (width, height) == (80, 96)
    return png


@pytest.fixture(scope="module")
def sc_bytes(source_bytes: bytes, overlay_png: bytes) -> bytes:
    with strict_dicom():
        return build_secondary_capture(
            source_bytes, overlay_png, model_name=MODEL, model_version=VERSION, class_name="PNEUMONIA"
        )


@pytest.fixture(scope="module")
def sr_bytes(source_bytes: bytes) -> bytes:
    return structured_report(source_bytes)


@pytest.fixture(scope="module")
def sc(sc_bytes: bytes) -> Dataset:
    return read_strict(sc_bytes)


@pytest.fixture(scope="module")
def sr(sr_bytes: bytes) -> Dataset:
    return read_strict(sr_bytes)


@pytest.fixture(scope="module")
def report(sr_bytes: bytes) -> hd.sr.ComprehensiveSR:
    document = hd.sr.srread(io.BytesIO(sr_bytes))
    assert isinstance(document, hd.sr.ComprehensiveSR)
    return document


@pytest.mark.parametrize(
    ("kind", "sop_class"), [("sc", SecondaryCaptureImageStorage), ("sr", ComprehensiveSRStorage)]
)
def test_part10_explicit_little_endian(kind: str, sop_class: str, request: pytest.FixtureRequest) -> None:
    data: bytes = request.getfixturevalue(f"{kind}_bytes")
    ds: Dataset = request.getfixturevalue(kind)
    assert data[128:132] == b"DICM"
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == sop_class
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID


@pytest.mark.parametrize("kind", ["sc", "sr"])
def test_same_patient_and_study_new_series_and_instance(
    kind: str, source: Dataset, request: pytest.FixtureRequest
) -> None:
    ds: Dataset = request.getfixturevalue(kind)
    copied = [keyword for keyword in PATIENT_STUDY_KEYWORDS if keyword in source]
    assert {"PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID"} <= set(copied)
    assert {"StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName", "StudyID"} <= set(copied)
    for keyword in copied:
        assert ds[keyword].value == source[keyword].value, keyword
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID
    assert ds.SOPInstanceUID != source.SOPInstanceUID
    assert int(ds.SeriesNumber) > 0 and int(ds.InstanceNumber) == 1
    assert ds.Manufacturer == "cxr-triage"
    assert MODEL in ds.SoftwareVersions and VERSION in ds.SoftwareVersions
    assert MODEL in ds.SeriesDescription and VERSION in ds.SeriesDescription
    assert len(ds.InstanceCreationDate) == 8 and ds.InstanceCreationTime


def test_each_call_opens_its_own_series(source_bytes: bytes, sc: Dataset, sr: Dataset) -> None:
    again = read_strict(structured_report(source_bytes))
    assert len({sc.SeriesInstanceUID, sr.SeriesInstanceUID, again.SeriesInstanceUID}) == 3
    assert again.StudyInstanceUID == sr.StudyInstanceUID


def test_sc_references_the_source_image(sc: Dataset, source: Dataset) -> None:
    (reference,) = sc.SourceImageSequence
    assert reference.ReferencedSOPClassUID == source.SOPClassUID
    assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert reference.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
    (series,) = sc.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    assert series.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID


def test_sc_says_what_it_is(sc: Dataset) -> None:
    assert sc.Modality == "OT"
    assert sc.ConversionType == "WSD"
    assert sc.BurnedInAnnotation == "NO"
    assert list(sc.ImageType) == ["DERIVED", "SECONDARY", "OTHER"]
    assert list(sc.PatientOrientation) == SOURCE_EXTRAS["PatientOrientation"]  # resized, not rotated
    for text in (sc.DerivationDescription, sc.ImageComments):
        assert "Grad-CAM" in text and "PNEUMONIA" in text and MODEL in text and VERSION in text
        assert "Decision support only" in text


def test_sc_pixels_are_the_overlay_png(sc: Dataset, sc_bytes: bytes, overlay_png: bytes) -> None:
    expected = png_pixels(overlay_png)
    assert sc.PhotometricInterpretation == "RGB"
    assert (sc.SamplesPerPixel, sc.PlanarConfiguration) == (3, 0)
    assert (sc.BitsAllocated, sc.BitsStored, sc.HighBit, sc.PixelRepresentation) == (8, 8, 7, 0)
    assert (sc.Rows, sc.Columns) == expected.shape[:2]
    np.testing.assert_array_equal(sc.pixel_array, expected)
    image = hd.imread(io.BytesIO(sc_bytes))  # highdicom reads it as an image too
    np.testing.assert_array_equal(image.get_frame(1), expected)


def test_sr_is_a_tid1500_report(sr: Dataset, report: hd.sr.ComprehensiveSR) -> None:
    assert sr.Modality == "SR"
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert (sr.CompletionFlag, sr.VerificationFlag, sr.PreliminaryFlag) == (
        "COMPLETE",
        "UNVERIFIED",
        "PRELIMINARY",
    )
    assert isinstance(report.content, hd.sr.MeasurementReport)
    schemes = {item.CodingSchemeDesignator for item in sr.CodingSchemeIdentificationSequence}
    assert PRIVATE_SCHEME in schemes


def test_sr_references_the_source_image(sr: Dataset, report: hd.sr.ComprehensiveSR, source: Dataset) -> None:
    (study,) = sr.CurrentRequestedProcedureEvidenceSequence
    assert study.StudyInstanceUID == source.StudyInstanceUID
    (series,) = study.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    (instance,) = series.ReferencedSOPSequence
    assert (instance.ReferencedSOPClassUID, instance.ReferencedSOPInstanceUID) == (
        source.SOPClassUID,
        source.SOPInstanceUID,
    )
    assert report.get_evidence() == [
        (source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID, source.SOPClassUID)
    ]
    images = find_content_items(report.content[0], value_type=hd.sr.ValueTypeValues.IMAGE, recursive=True)
    assert len(images) == len(PROBABILITIES)  # one source image per measurement group
    for image in images:
        assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID


def test_sr_holds_probabilities_threshold_and_model(sr_bytes: bytes) -> None:
    groups = measurement_groups(sr_bytes)
    assert [group.finding_type for group in groups] == [NORMAL, PNEUMONIA]
    for group, probability in zip(groups, PROBABILITIES.values(), strict=True):
        (measurement,) = group.get_measurements(name=codes.DCM.Probability)
        assert measurement.value == pytest.approx(probability, abs=1e-12)
        assert measurement.unit == codes.UCUM.NoUnits
        (name,) = find_content_items(group[0], name=codes.DCM.AlgorithmName)
        (version,) = find_content_items(group[0], name=codes.DCM.AlgorithmVersion)
        assert (name.value, version.value) == (MODEL, VERSION)
    thresholds = [group.get_measurements(name=codes.DCM.ThresholdValue) for group in groups]
    assert [len(found) for found in thresholds] == [0, 1]  # on the positive class only
    assert thresholds[1][0].value == pytest.approx(THRESHOLD)


def test_sr_states_finding_triage_level_and_decision_support(report: hd.sr.ComprehensiveSR) -> None:
    (container,) = find_content_items(report.content[0], name=QUALITATIVE_EVALUATIONS)
    (finding,) = find_content_items(container, name=codes.DCM.Finding)
    assert finding.value == PNEUMONIA
    (triage,) = find_content_items(container, name=TRIAGE_LEVEL)
    assert triage.value == CodedConcept("URGENT", PRIVATE_SCHEME, "Urgent")
    (comment,) = find_content_items(container, name=codes.DCM.Comment)
    assert "Decision support only" in comment.value and MODEL in comment.value and VERSION in comment.value


def test_sr_without_operating_point_and_unknown_classes(source_bytes: bytes) -> None:
    probabilities = {"NORMAL": 0.2, "COVID-19": 0.5, "bacterial pneumonia": 0.3}
    data = structured_report(
        source_bytes,
        probabilities=probabilities,
        predicted_class="COVID-19",
        triage_level=None,
        threshold=None,
        positive_class=None,
    )
    read_strict(data)
    groups = measurement_groups(data)
    report = hd.sr.srread(io.BytesIO(data))
    assert [group.finding_type for group in groups] == [
        NORMAL,
        CodedConcept("COVID-19", PRIVATE_SCHEME, "COVID-19"),
        CodedConcept("BACTERIAL_PNEUMONIA", PRIVATE_SCHEME, "bacterial pneumonia"),  # long: LongCodeValue
    ]
    root = report.content[0]
    assert not find_content_items(root, name=codes.DCM.ThresholdValue, recursive=True)
    assert not find_content_items(root, name=TRIAGE_LEVEL, recursive=True)
    (container,) = find_content_items(root, name=QUALITATIVE_EVALUATIONS)
    (finding,) = find_content_items(container, name=codes.DCM.Finding)
    assert finding.value.meaning == "COVID-19"


@pytest.mark.parametrize(
    ("source_charset", "model_name", "expected_charset"),
    [
        ("ISO_IR 100", MODEL, "ISO_IR 100"),  # the source's set is kept for ASCII output text
        ("ISO_IR 100", "modèle-ß", "ISO_IR 192"),  # non-ASCII model name: UTF-8, names transcoded
        (None, "modèle-ß", "ISO_IR 192"),
    ],
)
def test_character_sets_and_implicit_vr_source(
    source_charset: str | None, model_name: str, expected_charset: str, overlay_png: bytes
) -> None:
    extras: dict[str, object] = {"PatientName": "Müller^Jürgen" if source_charset else "Muller^Jurgen"}
    if source_charset is not None:
        extras["SpecificCharacterSet"] = source_charset
    source = source_dataset(**extras)
    source.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    data = dicom_bytes(source)
    with strict_dicom():
        sc_data = build_secondary_capture(
            data, overlay_png, model_name=model_name, model_version=VERSION, class_name="PNEUMONIA"
        )
    sr_data = structured_report(data, model_name=model_name)
    for ds in (read_strict(sc_data), read_strict(sr_data)):
        assert ds.SpecificCharacterSet == expected_charset
        assert ds.PatientName == source.PatientName
        assert ds["PatientName"].VR == "PN"  # the implicit-VR source's elements get explicit VRs
        assert model_name in ds.SoftwareVersions


def test_no_dicom_value_is_logged_or_warned(
    source: Dataset, source_bytes: bytes, overlay_png: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_secondary_capture(
            source_bytes, overlay_png, model_name=MODEL, model_version=VERSION, class_name="PNEUMONIA"
        )
        structured_report(source_bytes)
    emitted = [record.getMessage() for record in caplog.records] + [str(w.message) for w in caught]
    forbidden = [
        *FAKE_PHI_FRAGMENTS,
        source.StudyInstanceUID,
        source.SeriesInstanceUID,
        source.SOPInstanceUID,
    ]
    assert not [text for text in emitted if any(value in text for value in forbidden)]
    assert not caught


def _without(keyword: str) -> bytes:
    """The source without ``keyword``, written as-is (pydicom would refill the file meta otherwise)."""
    ds = source_dataset()
    del ds[keyword]
    meta_keyword = {"SOPInstanceUID": "MediaStorageSOPInstanceUID"}.get(keyword)
    if meta_keyword is not None:
        del ds.file_meta[meta_keyword]
    ds.preamble = b"\x00" * 128
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "outputs"),
    [
        (_without("StudyInstanceUID"), ("sc", "sr")),
        (_without("SOPInstanceUID"), ("sc", "sr")),
        (_without("SeriesInstanceUID"), ("sr",)),  # the SR's evidence needs the series
        (png_bytes(chest_like(16, 16)), ("sc", "sr")),  # not a DICOM upload at all
    ],
    ids=["no-study-uid", "no-sop-instance-uid", "no-series-uid", "png-upload"],
)
def test_refused_without_what_a_reference_needs(
    data: bytes, outputs: tuple[str, ...], overlay_png: bytes
) -> None:
    for output in outputs:
        with pytest.raises(InputError) as caught:
            if output == "sc":
                build_secondary_capture(
                    data, overlay_png, model_name=MODEL, model_version=VERSION, class_name="PNEUMONIA"
                )
            else:
                structured_report(data)
        assert (caught.value.code, caught.value.status) == ("dicom_output_unavailable", 422)
        assert not any(fragment in caught.value.detail for fragment in FAKE_PHI_FRAGMENTS)


def test_sr_refuses_an_unknown_source_sop_class() -> None:
    ds = source_dataset()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID("1.2.826.0.1.3680043.8.498.999")
    with pytest.raises(InputError) as caught:
        structured_report(dicom_bytes(ds))
    assert caught.value.code == "dicom_output_unavailable"


def test_sr_rejects_inconsistent_arguments(source_bytes: bytes) -> None:
    with pytest.raises(ValueError, match="predicted_class"):
        structured_report(source_bytes, predicted_class="EFFUSION")
    with pytest.raises(ValueError, match="positive_class"):
        structured_report(source_bytes, positive_class=None)


# --- hostile metadata (issue 15) ------------------------------------------------------------------

_BUILD_IN_A_BOUNDED_PROCESS = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from service.contract import InputError
from service.outputs.dicom_results import build_secondary_capture, build_structured_report
from tests.factories import chest_like, nested_patient_name_dicom, png_bytes
source = nested_patient_name_dicom(chest_like(96, 80), {depth})
try:
    if "{kind}" == "sc":
        build_secondary_capture(source, png_bytes(chest_like(64, 64)), model_name="m", model_version="1",
                                class_name="PNEUMONIA")
    else:
        build_structured_report(source, probabilities={{"NORMAL": 0.2, "PNEUMONIA": 0.8}},
                                predicted_class="PNEUMONIA", triage_level=None, threshold=None,
                                positive_class=None, model_name="m", model_version="1")
except InputError as exc:
    print(exc.code, exc.status)
"""
# Before the fix the builders needed 3 GB and 40 s at depth 250, and crashed the process: run them
# in a child with 2 GiB of address space and a timeout, so a regression fails without harming the host.
_CHILD_ADDRESS_SPACE = 2 << 30
_CHILD_TIMEOUT_S = 120


@pytest.mark.parametrize("kind", ["sc", "sr"])
@pytest.mark.parametrize("depth", [400, 1000])
def test_builders_refuse_a_patient_name_nested_as_a_deep_sequence(kind: str, depth: int) -> None:
    import subprocess
    import sys

    from tests.service.live import REPO_ROOT, service_env

    script = _BUILD_IN_A_BOUNDED_PROCESS.format(limit=_CHILD_ADDRESS_SPACE, depth=depth, kind=kind)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=service_env(),
        capture_output=True,
        text=True,
        timeout=_CHILD_TIMEOUT_S,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "dicom_too_deep 400"), done.stderr[-2000:]


def test_builders_copy_only_plain_listed_values(overlay_png: bytes) -> None:
    """Within the limits, hostile values still stay behind: a PatientName that is a sequence, a
    Study Description of 10,000 characters, a multi-valued Accession Number, a UID holding a name,
    a private element. The listed attributes that are plain come through."""
    data = nested_patient_name_dicom(chest_like(96, 80, seed=3), 5)
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.StudyDescription = "x" * 10_000
    ds.AccessionNumber = ["A1", "A2"]
    ds.add_new(0x00091010, "LO", "VENDOR")
    ds.add_new(0x00091001, "LO", "private value")
    sr_source = dicom_bytes(ds)
    with lenient_dicom():
        ds.SeriesInstanceUID = "Canaryson^Zebulon"  # the SC references the series only if it is a UID
        sc_source = dicom_bytes(ds)
    results = {
        "sc": build_secondary_capture(
            sc_source, overlay_png, model_name=MODEL, model_version=VERSION, class_name="PNEUMONIA"
        ),
        "sr": structured_report(sr_source, strict=False),
    }
    for kind, result in results.items():
        out = read_strict(result) if kind == "sc" else pydicom.dcmread(io.BytesIO(result))
        assert out["PatientName"].VR == "PN" and not out.PatientName, kind
        assert "StudyDescription" not in out, kind
        assert out.AccessionNumber in ("", None), kind
        assert 0x00091001 not in out, kind
        assert out.PatientID == ds.PatientID and out.StudyInstanceUID == ds.StudyInstanceUID, kind
        assert b"Canaryson" not in result, kind


def test_sr_refused_for_a_source_series_uid_that_is_not_a_uid() -> None:
    with lenient_dicom():
        source = dicom_bytes(source_dataset(SeriesInstanceUID="1.2.3\nforged log line"))
    with pytest.raises(InputError) as caught:
        structured_report(source, strict=False)
    assert caught.value.code == "dicom_output_unavailable"


def test_the_secondary_capture_gives_back_the_overlay_it_was_built_from(
    sc_bytes: bytes, sr_bytes: bytes, overlay_png: bytes
) -> None:
    assert np.array_equal(png_pixels(secondary_capture_png(sc_bytes)), png_pixels(overlay_png))
    with pytest.raises(ValueError, match="layout"):
        secondary_capture_png(sr_bytes)  # no pixels: not a Secondary Capture this service wrote
