"""Hostile and odd uploads against a real ``python -m service`` process (issue 6).

Each upload must get a specific 4xx ``{code, detail}`` (or, for odd but valid films, a 200 with a
deterministic answer), leave /healthz answering, keep patient data out of the logs and the body,
and not grow the server's memory by hundreds of MB: bombs are refused from their headers, before
anything is decompressed. Memory is the server process's own peak RSS (``VmHWM``), reset before
each upload through ``/proc/<pid>/clear_refs``; the control test proves that a real large decode
shows up in it. ``test_bad_inputs.py`` holds the plainer cases (empty file, truncated files, CT...).
"""

import io
import json
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import httpx
import jpeg_ls
import numpy as np
import numpy.typing as npt
import pydicom
import pydicom.config
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from bench.service_process import free_port
from service.contract.sniff import DICOM_MAGIC_OFFSET, PNG_MAGIC
from tests.factories import (
    FAKE_BIRTH_DATE,
    FAKE_PATIENT_ID,
    FAKE_PATIENT_NAME,
    animated_bytes,
    chest_like,
    deflated_dicom_bytes,
    dicom_bytes,
    dicom_dataset,
    dicom_element_flood,
    dicom_element_offset,
    dicomdir_bytes,
    encapsulated_dicom_bytes,
    exif_bytes,
    gray_image,
    jpeg_bytes,
    nested_patient_name_dicom,
    pillow_bytes,
    png_bytes,
    png_chunk,
    png_with_chunk,
    rle_frame,
)
from tests.service.live import AUTH_HEADERS, service_env, service_process, strict_json

FILM = chest_like(96, 80, seed=21)
MAX_UPLOAD_BYTES = 4 * 1024 * 1024
# Refused uploads are small; any of them decoded in full would add hundreds of MB.
REFUSED_MAX_GROWTH_MB = 100
# A 7000 x 7000 film really decoded: at least its float32 plane (196 MB) on top of the idle process.
DECODED_MIN_GROWTH_MB = 150
# A multipart file name a client might send: path traversal plus the fake patient's identity.
HOSTILE_FILENAME = f"../../../etc/{FAKE_PATIENT_NAME}_{FAKE_PATIENT_ID}_{FAKE_BIRTH_DATE}.dcm"
FORBIDDEN_IN_LOGS = (*FAKE_PATIENT_NAME.split("^"), FAKE_PATIENT_ID, FAKE_BIRTH_DATE, "../", "etc/")
PIXEL_DATA_TAG = 0x7FE00010
PATIENT_NAME_TAG = 0x00100010


# --- the server ---------------------------------------------------------------------------------


@dataclass
class Server:
    client: httpx.Client
    pid: int
    log_path: Path

    def peak_rss_mb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
        raise AssertionError("no VmHWM line")

    def reset_peak_rss(self) -> None:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # 5: reset the peak RSS to the current

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", errors="replace")


def _child_pid(port: str) -> int:
    """The ``python -m service`` child listening on ``port`` (found by its CXR_PORT)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and f"CXR_PORT={port}".encode() in environ:
            return int(proc.name)
    raise AssertionError("the service process was not found")


@pytest.fixture(scope="module")
def server(
    tiny_model_dir: Path, api_keys_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to read the server's peak memory")
    log_path = tmp_path_factory.mktemp("hostile") / "service.log"
    port = str(free_port())
    env = service_env(
        model_dir=str(tiny_model_dir),
        port=port,
        log_level="debug",
        api_keys_file=str(api_keys_file),
        max_upload_bytes=str(MAX_UPLOAD_BYTES),
        execution_provider="cpu",
        drain_seconds="0",  # nothing to drain at teardown
    )
    with (
        log_path.open("wb") as log,
        service_process(env, log) as url,
        httpx.Client(base_url=url, timeout=60.0, headers=AUTH_HEADERS) as client,
    ):
        yield Server(client, _child_pid(port), log_path)


def _upload(
    client: httpx.Client, data: bytes, content_type: str = "application/octet-stream"
) -> httpx.Response:
    return client.post("/v1/predict", files={"file": (HOSTILE_FILENAME, data, content_type)})


# --- builders (lazy: some take a second, and only their own test pays for it) -------------------


def flat_png(width: int, height: int) -> bytes:
    """A real, complete 1-bit black PNG: every row is there, zlib squeezes 30000 x 30000 into ~110 KB."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    deflate = zlib.compressobj(9)
    stream = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return PNG_MAGIC + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", stream) + png_chunk(b"IEND", b"")


def png_with_compressed_chunk(kind: bytes, inflated_size: int) -> bytes:
    """The film with a zTXt/iTXt/iCCP chunk that inflates to ``inflated_size`` bytes of 'A'."""
    prefix = {b"zTXt": b"Comment\0\0", b"iTXt": b"Comment\0\x01\x00\x00\x00", b"iCCP": b"icc\0\0"}[kind]
    deflate = zlib.compressobj(9)
    block = b"A" * (1 << 20)
    body = b"".join(deflate.compress(block) for _ in range(inflated_size >> 20)) + deflate.flush()
    return png_with_chunk(png_bytes(FILM), kind, prefix + body)


def psd_header() -> bytes:
    """Photoshop: signature, version 1, reserved, 1 channel, 96 x 80, 8 bits, greyscale, empty sections."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 1, 96, 80, 8, 1)
    return header + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0) + bytes(96 * 80)


def fits_bytes() -> bytes:
    cards = [
        "SIMPLE  =                    T",
        "BITPIX  =                    8",
        "NAXIS   =                    2",
    ]
    cards += ["NAXIS1  =                   80", "NAXIS2  =                   96", "END"]
    header = "".join(card.ljust(80) for card in cards).ljust(2880).encode("ascii")
    return header + bytes(80 * 96).ljust(2880, b"\0")


def multipage_tiff() -> bytes:
    return pillow_bytes(gray_image(FILM), "TIFF", save_all=True, append_images=[gray_image(FILM[::-1])])


def dicom_without_preamble() -> bytes:
    buffer = io.BytesIO()
    dicom_dataset(FILM).save_as(buffer, enforce_file_format=False)
    return buffer.getvalue()


def with_preamble(preamble: bytes) -> bytes:
    data = dicom_bytes(dicom_dataset(FILM))
    return preamble.ljust(DICOM_MAGIC_OFFSET, b"\0") + data[DICOM_MAGIC_OFFSET:]


PE_PREAMBLE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"This program cannot be run"
ELF_PREAMBLE = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00"
TIFF_PREAMBLE = b"II*\x00\x08\x00\x00\x00"  # DICOM-TIFF dual personality: legal, and not a program


def patched_length(tag: int, length_offset: int, fmt: str, value: int) -> bytes:
    data = bytearray(dicom_bytes(dicom_dataset(FILM)))
    at = dicom_element_offset(bytes(data), tag) + length_offset
    data[at : at + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return bytes(data)


def pixel_data_longer_than_promised() -> bytes:
    dataset = dicom_dataset(FILM)
    dataset.PixelData = dataset.PixelData + bytes(FILM.shape[1] * 2)  # one extra row's worth
    return dicom_bytes(dataset)


def non_chest() -> bytes:
    dataset = dicom_dataset(FILM)
    dataset.BodyPartExamined = "KNEE"
    return dicom_bytes(dataset)


def _small_8bit() -> Dataset:
    return dicom_dataset(chest_like(40, 32, seed=3), bits_stored=8, bits_allocated=8)


@cache
def jpeg_ls_frame(side: int) -> bytes:
    """A flat ``side`` x ``side`` JPEG-LS codestream: 2 KB for 8000 x 8000."""
    return bytes(jpeg_ls.encode(np.full((side, side), 128, dtype=np.uint8)))


def jpeg_ls_bomb() -> bytes:
    return encapsulated_dicom_bytes(_small_8bit(), [jpeg_ls_frame(8000)], JPEGLSLossless)


def j2k_with_wrong_size() -> bytes:
    """A real JPEG 2000 frame of 64 x 64 inside a 40 x 32 object."""
    data = dicom_bytes(
        dicom_dataset(chest_like(64, 64), bits_stored=8, bits_allocated=8), transfer_syntax=JPEG2000Lossless
    )
    frame = next(
        pydicom.encaps.generate_frames(pydicom.dcmread(io.BytesIO(data)).PixelData, number_of_frames=1)
    )
    return encapsulated_dicom_bytes(_small_8bit(), [frame], JPEG2000Lossless)


def j2k_garbage() -> bytes:
    return encapsulated_dicom_bytes(_small_8bit(), [b"\xff\x4f\xff\x51" + bytes(60)], JPEG2000Lossless)


def jpeg_claiming_more_pixels() -> bytes:
    big = pillow_bytes(Image.new("L", (400, 300), 90), "JPEG")
    return encapsulated_dicom_bytes(_small_8bit(), [big], JPEGBaseline8Bit)


def rle_offsets_past_the_end() -> bytes:
    header = struct.pack("<16I", 1, 1_000_000, *[0] * 14)  # one segment, starting 1 MB in
    return encapsulated_dicom_bytes(_small_8bit(), [header + bytes(16)], RLELossless)


def rle_fallback_bomb() -> bytes:
    """3.5 MB of replicate runs behind an RLE header pylibjpeg-rle refuses (junk in an unused offset
    slot): a fallback decoder expanding the segment would need 224 MB."""
    header = struct.pack("<16I", 1, 64, *[0] * 7, 117_440_512, *[0] * 6)
    runs = bytes([0x81, 7]) * (7 << 18)
    return encapsulated_dicom_bytes(_small_8bit(), [header + runs], RLELossless)


def rle_segment_too_short() -> bytes:
    runs = bytes([0x81, 7])  # one run of 128 bytes where the 40 x 32 frame needs 1280
    return encapsulated_dicom_bytes(_small_8bit(), [rle_frame([runs])], RLELossless)


def deflate_bomb() -> bytes:
    """256 MB of zeros in ~250 KB, past the 201 MB a 50 MP film may inflate to."""
    return deflated_dicom_bytes(dicom_dataset(FILM), extra_zeros=256 << 20)


def multipart(parts: int, *, preamble: bytes = b"") -> tuple[bytes, dict[str, str]]:
    boundary = "hostile-boundary"
    fields = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nx\r\n'.encode()
        for i in range(parts)
    )
    film = png_bytes(FILM)
    file_part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode() + film
    body = preamble + fields + file_part + f"\r\n--{boundary}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


# --- refused uploads ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    build: Callable[[], bytes]
    status: int
    code: str
    content_type: str = "application/octet-stream"


REFUSALS: dict[str, Refusal] = {
    # Pixel and metadata bombs: refused from the header, or after inflating 1 MiB at most.
    "png-flat-30000x30000": Refusal(lambda: flat_png(30_000, 30_000), 422, "too_many_pixels"),
    "png-flat-7100x7100": Refusal(lambda: flat_png(7_100, 7_100), 422, "too_many_pixels"),
    "png-ztxt-bomb": Refusal(
        lambda: png_with_compressed_chunk(b"zTXt", 64 << 20), 422, "decompressed_too_large"
    ),
    "png-itxt-bomb": Refusal(
        lambda: png_with_compressed_chunk(b"iTXt", 64 << 20), 422, "decompressed_too_large"
    ),
    "png-iccp-bomb": Refusal(
        lambda: png_with_compressed_chunk(b"iCCP", 64 << 20), 422, "decompressed_too_large"
    ),
    "dicom-deflate-bomb": Refusal(deflate_bomb, 422, "decompressed_too_large"),
    "dicom-jpeg-ls-8000x8000-in-40x32": Refusal(jpeg_ls_bomb, 400, "corrupt_dicom"),
    # Formats outside the allow-list, whatever the client says they are.
    "tiff": Refusal(lambda: pillow_bytes(gray_image(FILM), "TIFF"), 415, "unsupported_format", "image/png"),
    "tiff-multipage": Refusal(multipage_tiff, 415, "unsupported_format"),
    "gif": Refusal(lambda: pillow_bytes(gray_image(FILM), "GIF"), 415, "unsupported_format", "image/png"),
    "gif-animated": Refusal(
        lambda: animated_bytes([FILM, FILM[::-1]], image_format="GIF"), 415, "unsupported_format"
    ),
    "psd": Refusal(psd_header, 415, "unsupported_format"),
    "eps": Refusal(lambda: pillow_bytes(gray_image(FILM), "EPS"), 415, "unsupported_format"),
    "fits": Refusal(fits_bytes, 415, "unsupported_format", "application/fits"),
    "bmp": Refusal(lambda: pillow_bytes(gray_image(FILM), "BMP"), 415, "unsupported_format", "image/jpeg"),
    "webp": Refusal(lambda: pillow_bytes(gray_image(FILM), "WEBP"), 415, "unsupported_format"),
    # Animated / multi-frame: refused (not silently reduced to a frame the sender did not choose).
    "apng": Refusal(lambda: animated_bytes([FILM, FILM[::-1]]), 422, "multi_frame", "image/png"),
    "mpo-jpeg": Refusal(lambda: animated_bytes([FILM, FILM[::-1]], image_format="MPO"), 422, "multi_frame"),
    # DICOM that is not a Part 10 file, or that is also something else.
    "dicom-pe-polyglot": Refusal(lambda: with_preamble(PE_PREAMBLE), 422, "executable_preamble"),
    "dicom-elf-polyglot": Refusal(lambda: with_preamble(ELF_PREAMBLE), 422, "executable_preamble"),
    "dicomdir": Refusal(dicomdir_bytes, 422, "dicomdir", "application/dicom"),
    # Lengths that lie.
    "dicom-pixel-data-length-4gb": Refusal(
        lambda: patched_length(PIXEL_DATA_TAG, 8, "<I", 0xFFFFFFF0), 400, "corrupt_dicom"
    ),
    "dicom-patient-name-length-past-eof": Refusal(
        lambda: patched_length(PATIENT_NAME_TAG, 6, "<H", 0xFFFF), 400, "corrupt_dicom"
    ),
    "dicom-pixel-data-longer-than-rows-x-columns": Refusal(
        pixel_data_longer_than_promised, 400, "corrupt_dicom"
    ),
    "dicom-j2k-frame-of-another-size": Refusal(j2k_with_wrong_size, 400, "corrupt_dicom"),
    "dicom-j2k-bogus-codestream": Refusal(j2k_garbage, 400, "corrupt_dicom"),
    "dicom-jpeg-frame-larger-than-rows-x-columns": Refusal(jpeg_claiming_more_pixels, 400, "corrupt_dicom"),
    "dicom-rle-segment-offset-past-end": Refusal(rle_offsets_past_the_end, 400, "corrupt_dicom"),
    "dicom-rle-segment-too-short": Refusal(rle_segment_too_short, 400, "corrupt_dicom"),
    "dicom-rle-fallback-bomb": Refusal(rle_fallback_bomb, 400, "corrupt_dicom"),
    # Metadata bombs (issue 15): PatientName as a sequence nested 400 / 1000 deep once grew the
    # service to 24 GB when a result object was written, or answered 500 with a 100 KB log line.
    "dicom-patient-name-nested-400": Refusal(
        lambda: nested_patient_name_dicom(FILM, 400), 400, "dicom_too_deep", "application/dicom"
    ),
    "dicom-patient-name-nested-1000": Refusal(
        lambda: nested_patient_name_dicom(FILM, 1000), 400, "dicom_too_deep"
    ),
    "dicom-element-flood": Refusal(lambda: dicom_element_flood(FILM, 20_000), 400, "dicom_too_many_elements"),
    # Not a frontal chest radiograph.
    "dicom-non-chest": Refusal(non_chest, 422, "unsupported_body_part"),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_hostile_upload_is_refused_specifically_and_cheaply(server: Server, name: str) -> None:
    case = REFUSALS[name]
    data = case.build()
    assert len(data) < MAX_UPLOAD_BYTES
    log_start = server.log_size()
    server.reset_peak_rss()
    before = server.peak_rss_mb()
    response = _upload(server.client, data, case.content_type)
    growth = server.peak_rss_mb() - before

    body = strict_json(response)
    assert (response.status_code, body.get("code")) == (case.status, case.code), body
    assert set(body) == {"code", "detail"} and body["detail"]
    assert growth < REFUSED_MAX_GROWTH_MB, f"server peak RSS grew by {growth} MB"
    assert server.client.get("/healthz").status_code == 200
    _assert_clean(response.text, "response")
    log = server.log_since(log_start)
    assert f'"code": "{case.code}"' in log  # the rejection was logged, so the capture works
    _assert_clean(log, "log")


def _assert_clean(text: str, where: str) -> None:
    leaked = [fragment for fragment in FORBIDDEN_IN_LOGS if fragment.lower() in text.lower()]
    assert not leaked, f"{leaked} found in the {where}"


def test_peak_rss_sees_a_real_large_decode(server: Server) -> None:
    """Control for the growth bound above: a 7000 x 7000 film (49 MP, inside the 50 MP budget) is
    decoded, and the server's peak RSS shows it."""
    server.reset_peak_rss()
    before = server.peak_rss_mb()
    response = _upload(server.client, flat_png(7_000, 7_000))
    assert response.status_code == 200, response.text
    assert server.peak_rss_mb() - before > DECODED_MIN_GROWTH_MB


# --- multipart abuse ----------------------------------------------------------------------------


@pytest.mark.parametrize("fields", [16, 5_000])
def test_more_than_16_multipart_parts_are_refused(server: Server, fields: int) -> None:
    """The file and 16 more fields are 17 parts: the README's limit is 16 (17 were accepted)."""
    body, headers = multipart(fields)
    response = server.client.post("/v1/predict", content=body, headers=headers)
    assert (response.status_code, strict_json(response)["code"]) == (400, "too_many_parts")
    assert server.client.get("/healthz").status_code == 200


def test_sixteen_multipart_parts_are_accepted(server: Server) -> None:
    body, headers = multipart(15)
    assert server.client.post("/v1/predict", content=body, headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("content_type", "cut", "code"),
    [
        ("multipart/form-data; boundary=", False, "multipart_boundary_missing"),
        ('multipart/form-data; boundary=""', False, "multipart_boundary_missing"),
        ("multipart/form-data; boundary=hostile-boundary", True, "multipart_truncated"),
    ],
    ids=["empty-boundary", "quoted-empty-boundary", "no-closing-boundary"],
)
def test_multipart_edge_cases_get_a_precise_400(
    server: Server, content_type: str, cut: bool, code: str
) -> None:
    """Both were a misleading 422 'send the image as multipart/form-data'."""
    body, _ = multipart(0)
    if cut:
        body = body[: body.rindex(b"\r\n--hostile-boundary--")]
    response = server.client.post("/v1/predict", content=body, headers={"content-type": content_type})
    assert (response.status_code, strict_json(response)["code"]) == (400, code)


def test_no_body_byte_reaches_the_log_from_the_multipart_parser(server: Server) -> None:
    """python-multipart logged 'Expected boundary character ..., got <byte>' with a body byte."""
    log_start = server.log_size()
    body, headers = multipart(0)
    body = body.replace(b"--hostile-boundary\r\n", b"--hostile-bQundary\r\n", 1)  # 'Q' = 81
    response = server.client.post("/v1/predict", content=body, headers=headers)
    assert response.status_code == 400
    log = server.log_since(log_start)
    assert '"code": "invalid_request"' in log  # the refusal was logged, so the capture works
    assert "boundary character" not in log and "got 81" not in log


def test_multipart_preamble_past_the_limit_is_refused(server: Server) -> None:
    body, headers = multipart(0, preamble=b"x" * (MAX_UPLOAD_BYTES + 128 * 1024))
    response = server.client.post("/v1/predict", content=body, headers=headers)
    assert response.status_code == 413
    assert strict_json(response)["code"] == "upload_too_large"


def test_a_small_multipart_preamble_is_a_clean_400(server: Server) -> None:
    """RFC 2046 allows text before the first boundary, but python-multipart does not parse it, and no
    HTTP client sends one: refused as malformed, with the server unharmed."""
    body, headers = multipart(0, preamble=b"This is a multi-part message in MIME format.\r\n")
    response = server.client.post("/v1/predict", content=body, headers=headers)
    assert response.status_code == 400
    assert strict_json(response)["code"] == "invalid_request"
    assert server.client.post("/v1/predict", content=multipart(0)[0], headers=headers).status_code == 200


def test_path_traversal_file_name_is_neither_used_nor_logged(server: Server) -> None:
    log_start = server.log_size()
    response = _upload(server.client, png_bytes(FILM), "image/png")
    assert response.status_code == 200, response.text
    assert strict_json(response)["image"]["source_format"] == "png"
    log = server.log_since(log_start)
    assert '"msg": "prediction"' in log
    _assert_clean(log, "log")
    body = strict_json(response)
    del body["gradcam"]  # base64 could spell 'etc/' by chance
    _assert_clean(json.dumps(body), "response")


# --- odd but valid films: a deterministic, finite answer ----------------------------------------


def _probabilities(
    server: Server, data: bytes, content_type: str = "application/octet-stream"
) -> dict[str, float]:
    response = _upload(server.client, data, content_type)
    assert response.status_code == 200, response.text
    body = strict_json(response)  # refuses NaN / Infinity
    probabilities: dict[str, float] = body["probabilities"]
    assert all(np.isfinite(p) and 0.0 <= p <= 1.0 for p in probabilities.values())
    assert abs(sum(probabilities.values()) - 1.0) < 1e-5
    return probabilities


def _max_difference(a: dict[str, float], b: dict[str, float]) -> float:
    return max(abs(a[name] - b[name]) for name in a)


def _cmyk_jpeg(plane: npt.NDArray[np.float64]) -> bytes:
    return pillow_bytes(gray_image(plane).convert("CMYK"), "JPEG", quality=95)


# name -> (bytes, the same film in a reference encoding, tolerance on probabilities)
SAME_FILM: dict[str, tuple[Callable[[], bytes], Callable[[], bytes], float]] = {
    "png-16bit": (lambda: png_bytes(FILM, bits=16), lambda: png_bytes(FILM), 1e-4),
    "png-palette": (lambda: png_bytes(FILM, mode="P"), lambda: png_bytes(FILM), 1e-6),
    "png-rgba": (lambda: png_bytes(FILM, mode="RGBA"), lambda: png_bytes(FILM), 1e-6),
    "png-la": (lambda: png_bytes(FILM, mode="LA"), lambda: png_bytes(FILM), 1e-6),
    "jpeg-rgb": (lambda: jpeg_bytes(FILM, rgb=True), lambda: jpeg_bytes(FILM), 1e-4),
    "jpeg-cmyk": (lambda: _cmyk_jpeg(FILM), lambda: jpeg_bytes(FILM), 1e-4),
    # Stored turned 90 degrees anticlockwise, with Orientation 6 saying "turn clockwise to view".
    "png-exif-rotated": (
        lambda: exif_bytes(np.rot90(FILM), 6, image_format="PNG"),
        lambda: png_bytes(FILM),
        1e-6,
    ),
    "dicom-monochrome1": (
        lambda: dicom_bytes(dicom_dataset(FILM, photometric="MONOCHROME1")),
        lambda: dicom_bytes(dicom_dataset(FILM)),
        1e-6,
    ),
    "dicom-monochrome1-rle": (
        lambda: dicom_bytes(dicom_dataset(FILM, photometric="MONOCHROME1"), transfer_syntax=RLELossless),
        lambda: dicom_bytes(dicom_dataset(FILM)),
        1e-6,
    ),
    "png-bytes-sent-as-dicom": (lambda: png_bytes(FILM), lambda: png_bytes(FILM), 0.0),
    # A raw dataset (file meta but no preamble), as older archives write them: the same film.
    "dicom-without-preamble": (dicom_without_preamble, lambda: dicom_bytes(dicom_dataset(FILM)), 0.0),
    "dicom-with-tiff-preamble": (
        lambda: with_preamble(TIFF_PREAMBLE),
        lambda: dicom_bytes(dicom_dataset(FILM)),
        0.0,
    ),
}


@pytest.mark.parametrize("name", list(SAME_FILM))
def test_the_same_film_in_another_encoding_gets_the_same_answer(server: Server, name: str) -> None:
    build, reference, tolerance = SAME_FILM[name]
    data = build()
    first = _probabilities(server, data, "application/dicom")  # a lie for most: only bytes count
    assert _probabilities(server, data) == first  # deterministic, to the last bit
    assert _max_difference(first, _probabilities(server, reference())) <= tolerance


def test_tolerances_above_would_catch_a_different_film(server: Server) -> None:
    """Control: the tiny model's answer moves far more than those tolerances (0.03 when measured)
    for an inverted film, which is what a MONOCHROME1 file read without inversion would be."""
    upright = _probabilities(server, dicom_bytes(dicom_dataset(FILM)))
    inverted = _probabilities(server, dicom_bytes(dicom_dataset(1.0 - FILM)))
    assert _max_difference(upright, inverted) > 1e-3


def test_exif_rotation_is_reported_in_the_upright_size(server: Server) -> None:
    response = _upload(server.client, exif_bytes(np.rot90(FILM), 6, image_format="JPEG"))
    assert response.status_code == 200, response.text
    image = strict_json(response)["image"]
    assert (image["height"], image["width"]) == FILM.shape


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(lambda: png_bytes(np.array([[0.5]])), id="png-1x1"),
        pytest.param(lambda: jpeg_bytes(np.array([[0.5]])), id="jpeg-1x1"),
        pytest.param(lambda: dicom_bytes(dicom_dataset(np.array([[0.5]]))), id="dicom-1x1"),
        pytest.param(lambda: png_bytes(chest_like(2, 10_000)), id="png-10000x2"),
        pytest.param(lambda: png_bytes(chest_like(10_000, 2)), id="png-2x10000"),
        pytest.param(lambda: png_bytes(np.full((64, 64), 0.37)), id="png-constant"),
        pytest.param(lambda: png_bytes(np.zeros((64, 64)), mode="1"), id="png-1bit-black"),
        pytest.param(lambda: png_bytes(FILM, mode="1"), id="png-1bit-dithered-film"),
        pytest.param(lambda: jpeg_bytes(np.ones((64, 64))), id="jpeg-white"),
        pytest.param(lambda: dicom_bytes(dicom_dataset(np.zeros((64, 64)))), id="dicom-constant"),
        pytest.param(
            lambda: dicom_bytes(dicom_dataset(FILM, window=(100_000.0, 10.0))), id="dicom-window-outside-data"
        ),
    ],
)
def test_degenerate_films_get_a_finite_deterministic_answer(
    server: Server, data: Callable[[], bytes]
) -> None:
    raw = data()
    first = _probabilities(server, raw)  # strict JSON: no NaN or Infinity anywhere in the body
    response = _upload(server.client, raw)
    assert strict_json(response)["probabilities"] == first
    gradcam = strict_json(response)["gradcam"]
    assert gradcam is not None and gradcam["width"] >= 1 and gradcam["height"] >= 1


def test_polyglot_preamble_is_never_echoed(server: Server) -> None:
    """Non-executable preambles are accepted, but results are built with a zeroed one."""
    response = server.client.post(
        "/v1/predict",
        params={"result": "sc"},
        files={"file": ("x.dcm", with_preamble(TIFF_PREAMBLE), "application/dicom")},
    )
    assert response.status_code == 200, response.text
    assert response.content[:DICOM_MAGIC_OFFSET] == bytes(DICOM_MAGIC_OFFSET)
    assert response.content[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == b"DICM"


# --- UIDs (issue 15) ------------------------------------------------------------------------------

FORGED_LOG_LINE = '1.2.3\n{"level": "info", "msg": "forged"}'


def _with_uids(study: object, sop: str) -> bytes:
    """The film with these Study / SOP Instance UIDs, written as they are (no validation)."""
    settings = pydicom.config.settings
    saved = settings.writing_validation_mode
    settings.writing_validation_mode = pydicom.config.IGNORE
    try:
        ds = dicom_dataset(FILM)
        ds.add_new(0x0020000D, "UI", study)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(sop)
        return dicom_bytes(ds)
    finally:
        settings.writing_validation_mode = saved


UID_CASES: dict[str, tuple[object, str, dict[str, object]]] = {
    # name: (Study Instance UID, SOP Instance UID, the "dicom" member of the answer)
    "name-as-study-uid": (
        "Canaryson^Zebulon",
        "1.2.3.4",
        {
            "study_instance_uid": None,
            "sop_instance_uid": "1.2.3.4",
            "warnings": ["invalid_study_instance_uid"],
        },
    ),
    "newline-in-sop-uid": (
        "1.2.3",
        FORGED_LOG_LINE,
        {"study_instance_uid": "1.2.3", "sop_instance_uid": None, "warnings": ["invalid_sop_instance_uid"]},
    ),
    "multi-valued": (
        ["1.2.3", "1.2.4"],
        "1.2.3.4",
        {
            "study_instance_uid": None,
            "sop_instance_uid": "1.2.3.4",
            "warnings": ["invalid_study_instance_uid"],
        },
    ),
    "leading-zero-and-too-long": (
        "1.02.3",
        "1." + "2" * 70,
        {
            "study_instance_uid": None,
            "sop_instance_uid": None,
            "warnings": ["invalid_study_instance_uid", "invalid_sop_instance_uid"],
        },
    ),
    "valid": ("1.0.3", "0.1", {"study_instance_uid": "1.0.3", "sop_instance_uid": "0.1", "warnings": []}),
}


@pytest.mark.parametrize("name", list(UID_CASES))
def test_uids_are_validated_before_they_are_echoed(server: Server, name: str) -> None:
    study, sop, expected = UID_CASES[name]
    log_start = server.log_size()
    response = _upload(server.client, _with_uids(study, sop))
    assert response.status_code == 200, response.text
    assert strict_json(response)["dicom"] == expected
    log = server.log_since(log_start)
    assert "Canaryson" not in log and "forged" not in log
