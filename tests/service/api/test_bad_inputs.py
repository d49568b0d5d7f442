"""Every kind of bad upload gets a 4xx ``{code, detail}`` and leaves the server healthy."""

import struct
import zlib
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest

from service.contract.sniff import PNG_MAGIC
from tests.factories import chest_like, dicom_bytes, dicom_dataset, jpeg_bytes, png_bytes
from tests.service.live import TEST_MAX_UPLOAD_BYTES, post_file, strict_json

FILM = chest_like(96, 80, seed=5)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose IHDR claims ``width x height``: a decompression bomb's header."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        PNG_MAGIC + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")
    )


def _without_pixel_data() -> bytes:
    ds = dicom_dataset(FILM)
    del ds.PixelData
    return dicom_bytes(ds)


def _truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def _chunked_body(boundary: str, size: int) -> Iterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.dcm"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    for _ in range(size // 65536):
        yield b"\0" * 65536
    yield f"\r\n--{boundary}--\r\n".encode()


def _send_file(data: bytes) -> Callable[[httpx.Client], httpx.Response]:
    return lambda client: post_file(client, data)


# name -> (request, expected status, expected code)
CASES: dict[str, tuple[Callable[[httpx.Client], httpx.Response], int, str]] = {
    "empty-file": (_send_file(b""), 400, "empty_file"),
    "empty-body": (lambda c: c.post("/v1/predict"), 422, "invalid_request"),
    "missing-file-field": (
        lambda c: c.post("/v1/predict", files={"image": ("film.png", png_bytes(FILM))}),
        422,
        "invalid_request",
    ),
    "form-urlencoded": (lambda c: c.post("/v1/predict", data={"file": "x"}), 422, "invalid_request"),
    "file-as-text-field": (
        lambda c: c.post("/v1/predict", files={"file": (None, b"not a file part")}),
        422,
        "invalid_request",
    ),
    "two-files": (
        lambda c: c.post(
            "/v1/predict", files=[("file", ("a.png", png_bytes(FILM))), ("file", ("b.png", png_bytes(FILM)))]
        ),
        400,
        "invalid_request",
    ),
    "no-boundary": (
        lambda c: c.post("/v1/predict", content=b"abc", headers={"content-type": "multipart/form-data"}),
        400,
        "multipart_boundary_missing",
    ),
    "bad-query": (
        lambda c: c.post("/v1/predict?overlay=perhaps", files={"file": ("f", png_bytes(FILM))}),
        422,
        "invalid_request",
    ),
    "not-an-image": (_send_file(b"%PDF-1.7 this is not a radiograph" * 10), 415, "unsupported_format"),
    "text": (_send_file(b"hello"), 415, "unsupported_format"),
    "truncated-png": (_send_file(_truncated(png_bytes(FILM))), 400, "corrupt_image"),
    "truncated-jpeg": (_send_file(_truncated(jpeg_bytes(FILM))), 400, "corrupt_image"),
    "corrupt-dicom": (
        _send_file(b"\0" * 128 + b"DICM" + np.random.default_rng(0).bytes(4096)),
        400,
        "corrupt_dicom",
    ),
    "truncated-dicom": (_send_file(_truncated(dicom_bytes(dicom_dataset(FILM)))), 400, "corrupt_dicom"),
    "png-bomb-20000": (_send_file(png_claiming(20_000, 20_000)), 422, "too_many_pixels"),
    "png-bomb-8000": (_send_file(png_claiming(8_000, 8_000)), 422, "too_many_pixels"),
    "ct": (_send_file(dicom_bytes(dicom_dataset(FILM, modality="CT"))), 422, "unsupported_modality"),
    "mr": (_send_file(dicom_bytes(dicom_dataset(FILM, modality="MR"))), 422, "unsupported_modality"),
    "multi-frame": (_send_file(dicom_bytes(dicom_dataset(FILM, frames=2))), 422, "multi_frame"),
    "no-pixel-data": (_send_file(_without_pixel_data()), 422, "no_pixel_data"),
    # Content-Length over the limit: refused before the body is read.
    "too-large": (_send_file(b"\0" * (2 * TEST_MAX_UPLOAD_BYTES)), 413, "upload_too_large"),
    # Within the multipart allowance, but the file itself is one byte over.
    "one-byte-over": (_send_file(b"\0" * (TEST_MAX_UPLOAD_BYTES + 1)), 413, "upload_too_large"),
    # No Content-Length (chunked): refused while streaming.
    "too-large-chunked": (
        lambda c: c.post(
            "/v1/predict",
            content=_chunked_body("b0undary", 4 * TEST_MAX_UPLOAD_BYTES),
            headers={"content-type": "multipart/form-data; boundary=b0undary"},
        ),
        413,
        "upload_too_large",
    ),
}


def test_every_bad_input_is_a_clean_4xx_and_the_server_stays_healthy(client: httpx.Client) -> None:
    failures = []
    for name, (send, status, code) in CASES.items():
        response = send(client)
        body = strict_json(response)
        if (response.status_code, body.get("code")) != (status, code) or set(body) != {"code", "detail"}:
            failures.append(f"{name}: got {response.status_code} {body}, expected {status} {code}")
        elif not isinstance(body["detail"], str) or not body["detail"]:
            failures.append(f"{name}: empty detail")
    assert not failures, "\n".join(failures)

    ok = post_file(client, png_bytes(FILM))
    assert ok.status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [("GET", "/v1/nothing-here", 404, "not_found"), ("GET", "/v1/predict", 405, "method_not_allowed")],
)
def test_routing_errors_use_the_same_shape(
    client: httpx.Client, method: str, path: str, status: int, code: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == status
    assert strict_json(response) == {"code": code, "detail": response.json()["detail"]}
