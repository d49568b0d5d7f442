"""One film through the real runtime and builders: results whose UIDs a retry reproduces exactly."""

import io
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from service.contract import InputError
from service.inference.runtime import ModelRuntime
from service.pacs.triage import triage_film
from service.pacs.uids import result_uid
from service.settings import Settings
from tests.factories import dicom_bytes
from tests.service.pacs.harness import film


@pytest.fixture(scope="module")
def runtime(tiny_model_dir: Path) -> Iterator[ModelRuntime]:
    yield ModelRuntime.load(Settings(model_dir=tiny_model_dir, execution_provider="cpu", auth="disabled"))


def _read(part10: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(part10))


def test_a_retry_files_the_very_same_objects(runtime: ModelRuntime) -> None:
    source = film(seed=50)
    data = dicom_bytes(source)
    first = triage_film(data, runtime, max_pixels=10**7, overlay_max_side=64)
    again = triage_film(data, runtime, max_pixels=10**7, overlay_max_side=64)
    assert (first.sr_instance_uid, first.sc_instance_uid) == (again.sr_instance_uid, again.sc_instance_uid)
    assert first.sr_instance_uid != first.sc_instance_uid
    card = runtime.card
    assert first.sr_instance_uid == result_uid("sr", str(source.SOPInstanceUID), card.name, card.version)
    assert (
        result_uid("sr", str(source.SOPInstanceUID), card.name, card.version + "-next")
        != first.sr_instance_uid
    )
    for part10, uid in ((first.sr, first.sr_instance_uid), (first.sc, first.sc_instance_uid)):
        ds = _read(part10)
        assert ds.SOPInstanceUID == uid and ds.file_meta.MediaStorageSOPInstanceUID == uid
        assert (
            ds.StudyInstanceUID == source.StudyInstanceUID
            and ds.SeriesInstanceUID != source.SeriesInstanceUID
        )
    assert _read(first.sc).SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert first.model_version == card.version and 0.0 <= first.probability <= 1.0


def test_films_of_one_study_share_one_result_series_per_kind(runtime: ModelRuntime) -> None:
    one = film(seed=51)
    two = film(str(one.StudyInstanceUID), seed=52)
    a = triage_film(dicom_bytes(one), runtime, max_pixels=10**7, overlay_max_side=64)
    b = triage_film(dicom_bytes(two), runtime, max_pixels=10**7, overlay_max_side=64)
    assert _read(a.sr).SeriesInstanceUID == _read(b.sr).SeriesInstanceUID
    assert _read(a.sc).SeriesInstanceUID == _read(b.sc).SeriesInstanceUID != _read(a.sr).SeriesInstanceUID
    assert a.sr_instance_uid != b.sr_instance_uid


def test_a_film_the_contract_refuses_raises_its_reason(runtime: ModelRuntime) -> None:
    lateral = film(seed=53, ViewPosition="LL")
    with pytest.raises(InputError) as raised:
        triage_film(dicom_bytes(lateral), runtime, max_pixels=10**7, overlay_max_side=64)
    assert raised.value.code == "unsupported_view"
