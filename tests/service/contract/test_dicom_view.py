"""Only frontal chest films: present-and-contradicting BodyPartExamined/ViewPosition are refused,
missing ones are tolerated (many archives leave them empty)."""

import pytest

from service.contract import InputError, decode_image
from tests.factories import chest_like, dicom_bytes, dicom_dataset


def _film(**tags: str) -> bytes:
    ds = dicom_dataset(chest_like(48, 40))
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    return dicom_bytes(ds)


@pytest.mark.parametrize(
    "tags",
    [
        {"ViewPosition": "PA"},
        {"ViewPosition": "AP"},
        {"ViewPosition": ""},
        {"BodyPartExamined": ""},
        {"BodyPartExamined": "THORAX", "ViewPosition": "ap"},
    ],
)
def test_frontal_chest_or_missing_tags_are_accepted(tags: dict[str, str]) -> None:
    assert decode_image(_film(**tags)).height == 48


@pytest.mark.parametrize(
    ("tags", "code"),
    [
        ({"ViewPosition": "LL"}, "unsupported_view"),
        ({"ViewPosition": "RLO"}, "unsupported_view"),
        ({"BodyPartExamined": "ABDOMEN"}, "unsupported_body_part"),
        ({"BodyPartExamined": "SKULL", "ViewPosition": "PA"}, "unsupported_body_part"),
    ],
)
def test_contradicting_tags_are_refused_with_a_reason(tags: dict[str, str], code: str) -> None:
    with pytest.raises(InputError) as caught:
        decode_image(_film(**tags))
    assert (caught.value.status, caught.value.code) == (422, code)
    assert next(iter(tags.values())) in caught.value.detail
