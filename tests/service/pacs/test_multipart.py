"""multipart/related splitting for STOW-RS: binary-safe, strict about structure."""

import pytest

from service.api.multipart import media_type, split_related
from service.contract import InputError


def test_parts_keep_their_bytes_exactly() -> None:
    payload = b"\r\n--not-the-boundary\r\n\x00\xff" * 3
    body = (
        b"preamble\r\n--b1\r\nContent-Type: application/dicom\r\n\r\n"
        + payload
        + b"\r\n--b1\r\ncontent-type: Application/DICOM; transfer-syntax=1.2\r\n\r\nsecond\r\n--b1--\r\n"
    )
    parts = split_related(body, "b1", max_parts=10)
    assert [part.content_type for part in parts] == ["application/dicom", "application/dicom"]
    assert parts[0].body == payload and parts[1].body == b"second"


def test_media_type_parameters() -> None:
    kind, params = media_type('Multipart/Related; type="application/dicom"; boundary=abc')
    assert kind == "multipart/related" and params == {"type": "application/dicom", "boundary": "abc"}


@pytest.mark.parametrize(
    "body",
    [b"no boundary here", b"--b1\r\nContent-Type: application/dicom\r\n\r\nunterminated", b"--b1junk"],
)
def test_malformed_bodies_are_400(body: bytes) -> None:
    with pytest.raises(InputError) as raised:
        split_related(body, "b1", max_parts=10)
    assert raised.value.status == 400


def test_too_many_parts() -> None:
    body = b"".join(b"--b\r\n\r\nx\r\n" for _ in range(3)) + b"--b--"
    with pytest.raises(InputError) as raised:
        split_related(body, "b", max_parts=2)
    assert raised.value.status == 413
