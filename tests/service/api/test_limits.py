"""Limits through a real server: the bounded admission queue, the per-request deadline, chunked
uploads and the decoded-pixel cap; and the deadline's steps on their own, with real awaits."""

import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from service.errors import ServiceError
from service.inference.admission import RETRY_AFTER_S, Admission, Deadline, processing_timeout, upload_timeout
from service.observability.metrics import Metrics
from tests.factories import chest_like, png_bytes
from tests.service.live import AUTH_HEADERS, live_client, metric_value, post_file, strict_json
from tests.service.raw_http import RawUpload, wait_until

FILM = png_bytes(chest_like(96, 80, seed=21))


@pytest.fixture(scope="module")
def one_slot(tiny_model_dir: Path, api_keys_file: Path) -> Iterator[httpx.Client]:
    """One prediction at a time, one more queued; a pixel cap between the test films' sizes."""
    yield from live_client(
        tiny_model_dir, api_keys_file, max_concurrent_predictions=1, max_queued=1, max_pixels=100 * 100
    )


@pytest.fixture(scope="module")
def short_deadline(tiny_model_dir: Path, api_keys_file: Path) -> Iterator[httpx.Client]:
    yield from live_client(tiny_model_dir, api_keys_file, request_timeout_s=2.0)


def _running(client: httpx.Client) -> float:
    return metric_value(client, "cxr_admission_running")


def _waiting(client: httpx.Client) -> float:
    return metric_value(client, "cxr_admission_waiting")


def _in_flight(client: httpx.Client) -> float:
    return metric_value(client, "cxr_upload_bytes_in_flight")


def test_uploads_in_progress_hold_no_slot(one_slot: httpx.Client) -> None:
    """Issue 15: a slot was taken before the body was read, so twenty trickling uploads held all the
    slots. Two half-sent uploads on a one-slot server now leave it free for a complete request."""
    base = str(one_slot.base_url)
    with (
        RawUpload(base, FILM, AUTH_HEADERS, send=len(FILM) // 2) as first,
        RawUpload(base, FILM, AUTH_HEADERS, send=len(FILM) // 2) as second,
    ):
        body_size = len(first.body)
        wait_until(lambda: _in_flight(one_slot) >= 2 * body_size, "both uploads to reserve their bytes")
        assert (_running(one_slot), _waiting(one_slot)) == (0, 0)
        ok = post_file(one_slot, FILM)
        assert ok.status_code == 200, ok.text
        for upload in (first, second):
            upload.send_rest()
            status, _, body = upload.response()
            assert status == 200, body
    wait_until(lambda: _in_flight(one_slot) == 0, "the reservations to be handed back")
    assert (_running(one_slot), _waiting(one_slot)) == (0, 0)


@pytest.fixture(scope="module")
def small_upload_budget(tiny_model_dir: Path, api_keys_file: Path) -> Iterator[httpx.Client]:
    """Room for one test upload in flight, not two."""
    yield from live_client(tiny_model_dir, api_keys_file, upload_bytes_in_flight=int(len(FILM) * 1.5))


def test_uploads_past_the_bytes_in_flight_budget_are_refused_at_once(
    small_upload_budget: httpx.Client,
) -> None:
    base = str(small_upload_budget.base_url)
    with RawUpload(base, FILM, AUTH_HEADERS, send=100) as holder:
        wait_until(lambda: _in_flight(small_upload_budget) > 0, "the first upload to reserve its bytes")
        refused = post_file(small_upload_budget, FILM)
        assert refused.status_code == 503
        assert strict_json(refused)["code"] == "overloaded"
        assert refused.headers["retry-after"] == str(RETRY_AFTER_S)
        holder.send_rest()
        status, _, body = holder.response()
        assert status == 200, body
    wait_until(lambda: _in_flight(small_upload_budget) == 0, "the reservation to be handed back")
    assert post_file(small_upload_budget, FILM).status_code == 200


# An 8.4 MB film, the size of a 2048 x 2048 12-bit DICOM: far more than the socket buffers hold, so
# the client is still sending when the service answers. What it holds does not matter: it is refused
# before it is read.
LARGE_FILM = bytes(range(256)) * (8_400_000 // 256)


@pytest.fixture(scope="module")
def large_upload_budget(tiny_model_dir: Path, api_keys_file: Path) -> Iterator[httpx.Client]:
    """Room for one large upload in flight, not two."""
    yield from live_client(tiny_model_dir, api_keys_file, upload_bytes_in_flight=int(len(LARGE_FILM) * 1.5))


def test_a_large_upload_past_the_budget_reads_its_503_not_a_reset(large_upload_budget: httpx.Client) -> None:
    """The service answers 503 before reading the body; closing at once with the body unread made the
    kernel reset the connection, and the client - sending its 8.4 MB before reading, as every HTTP
    library does - got a connection reset instead of the answer (issue 20). Now the rest of the body
    is read and dropped (a lingering close) and the answer arrives whole."""
    base = str(large_upload_budget.base_url)
    with RawUpload(base, LARGE_FILM, AUTH_HEADERS, send=100) as holder:
        wait_until(lambda: _in_flight(large_upload_budget) > 0, "the first upload to reserve its bytes")
        held = _in_flight(large_upload_budget)
        for _ in range(3):
            # As bench.http_load and most clients do: the whole request written, then the answer read.
            with RawUpload(base, LARGE_FILM, AUTH_HEADERS, send=0) as refused:
                refused.send_rest()
                status, headers, body = refused.response()
            assert (status, headers["connection"]) == (503, "close")
            assert headers["retry-after"] == str(RETRY_AFTER_S)
            assert strict_json(httpx.Response(status, content=body))["code"] == "overloaded"
        # httpx reads an answer even when its write fails; the same answer either way.
        refused_httpx = post_file(large_upload_budget, LARGE_FILM)
        assert refused_httpx.status_code == 503, refused_httpx.text
        assert strict_json(refused_httpx)["code"] == "overloaded"
        # The dropped bytes were never counted: only the holder's reservation is in flight.
        assert _in_flight(large_upload_budget) == held
        assert not holder.hung_up()
    wait_until(lambda: _in_flight(large_upload_budget) == 0, "the reservation to be handed back")


@pytest.fixture(scope="module")
def lingering(tiny_model_dir: Path, api_keys_file: Path) -> Iterator[httpx.Client]:
    """Short lingering bounds: 3 s in all, 1 s idle, about 1 MiB (the largest accepted upload)."""
    yield from live_client(
        tiny_model_dir,
        api_keys_file,
        max_upload_bytes=1024 * 1024,
        upload_linger_s=3.0,
        upload_idle_timeout_s=1.0,
    )


def _refused_too_large(client: httpx.Client, size: int) -> RawUpload:
    """A raw upload of ``size`` bytes with 100 of them sent, and its 413 read (refused from its
    Content-Length, before reading): the service is now lingering on the rest."""
    upload = RawUpload(str(client.base_url), bytes(size), AUTH_HEADERS, send=100)
    status, headers, body = upload.response()
    assert (status, headers["connection"]) == (413, "close")
    assert strict_json(httpx.Response(status, content=body))["code"] == "upload_too_large"
    return upload


def test_a_lingering_close_ends_when_the_client_goes_idle(lingering: httpx.Client) -> None:
    with _refused_too_large(lingering, 2 * 1024 * 1024) as upload:
        time.sleep(2.0)  # past the 1 s idle timeout, before the 3 s bound
        assert upload.hung_up()


def test_a_lingering_close_ends_after_its_time_bound(lingering: httpx.Client) -> None:
    with _refused_too_large(lingering, 2 * 1024 * 1024) as upload:
        started = time.monotonic()
        trickle = upload.trickle(0.2)  # never idle for 1 s; the body would take days
        trickle.join(timeout=10.0)
        assert not trickle.is_alive(), "the service never hung up"
        assert 2.5 < time.monotonic() - started < 6.0


def test_a_lingering_close_drops_no_more_than_the_largest_upload(lingering: httpx.Client) -> None:
    """A client pouring bytes in is cut off after about the largest accepted upload (1 MiB here, plus
    what the socket buffers hold), long before the time bound; nothing is buffered meanwhile."""
    with _refused_too_large(lingering, 64 * 1024 * 1024) as upload:
        started = time.monotonic()
        with pytest.raises(OSError):
            upload.send_rest()
        assert time.monotonic() - started < 2.5


@pytest.mark.parametrize(
    ("path", "headers", "status"), [("/v1/predict", {}, 401), ("/v1/nowhere", AUTH_HEADERS, 404)]
)
def test_an_early_answer_kept_alive_still_ends_a_trickled_body(
    lingering: httpx.Client, path: str, headers: dict[str, str], status: int
) -> None:
    """Refused before its body is read (uvicorn would keep such a connection alive and drain it
    forever): the answer says Connection: close, and a client trickling the body (a byte every
    0.2 s, never idle for 1 s) is hung up on within the 3 s lingering bound."""
    with RawUpload(str(lingering.base_url), bytes(2 * 1024 * 1024), headers, send=100, path=path) as upload:
        answered, answer_headers, _ = upload.response()
        assert (answered, answer_headers.get("connection")) == (status, "close")  # clients do not reuse it
        started = time.monotonic()
        trickle = upload.trickle(0.2)
        trickle.join(timeout=10.0)
        assert not trickle.is_alive(), "the service never hung up"
        assert time.monotonic() - started < 6.0


@pytest.fixture(scope="module")
def impatient(tiny_model_dir: Path, api_keys_file: Path) -> Iterator[httpx.Client]:
    yield from live_client(
        tiny_model_dir,
        api_keys_file,
        upload_idle_timeout_s=0.5,
        upload_rate_grace_s=0.5,
        upload_min_rate_bps=1000.0,
    )


def test_a_trickling_upload_is_cut_off_by_the_minimum_rate(impatient: httpx.Client) -> None:
    with RawUpload(str(impatient.base_url), FILM, AUTH_HEADERS, send=200) as slow:
        slow.trickle(0.1)  # 10 bytes/s, never idle for 0.5 s
        status, headers, body = slow.response()
    assert (status, headers["connection"]) == (408, "close")
    answer = strict_json(httpx.Response(status, content=body))
    assert answer["code"] == "upload_too_slow" and "CXR_UPLOAD_MIN_RATE_BPS" in answer["detail"]
    wait_until(lambda: _in_flight(impatient) == 0, "the reservation to be handed back")
    assert post_file(impatient, FILM).status_code == 200


def test_a_stalled_upload_is_cut_off_by_the_idle_timeout(impatient: httpx.Client) -> None:
    with RawUpload(str(impatient.base_url), FILM, AUTH_HEADERS, send=200) as stalled:
        status, _, body = stalled.response()
    answer = strict_json(httpx.Response(status, content=body))
    assert (status, answer["code"]) == (408, "upload_too_slow")
    assert "CXR_UPLOAD_IDLE_TIMEOUT_S" in answer["detail"]


def test_the_pixel_cap_setting_applies_over_http(one_slot: httpx.Client) -> None:
    assert post_file(one_slot, png_bytes(chest_like(96, 80))).status_code == 200  # 7,680 pixels
    response = post_file(one_slot, png_bytes(chest_like(120, 100)))  # 12,000 > 10,000
    assert (response.status_code, strict_json(response)["code"]) == (422, "too_many_pixels")


def test_a_trickling_client_is_cut_off_at_the_deadline_without_hurting_others(
    short_deadline: httpx.Client,
) -> None:
    before = metric_value(short_deadline, "cxr_deadline_exceeded_total", step="upload")
    with RawUpload(str(short_deadline.base_url), FILM, AUTH_HEADERS, send=200) as slow:
        slow.trickle(0.05)  # always sending, so an idle-read timeout would never fire
        wait_until(lambda: _in_flight(short_deadline) > 0, "the slow upload to be read")
        for seed in range(3):
            ok = post_file(short_deadline, png_bytes(chest_like(seed=seed)), params={"overlay": "false"})
            assert ok.status_code == 200, ok.text
        status, headers, body = slow.response()
    assert status == 408
    assert headers["connection"] == "close"
    assert strict_json(httpx.Response(status, content=body))["code"] == "request_timeout"
    assert metric_value(short_deadline, "cxr_deadline_exceeded_total", step="upload") == before + 1
    assert _running(short_deadline) == 0
    assert short_deadline.get("/healthz").status_code == 200
    assert post_file(short_deadline, FILM).status_code == 200


def test_a_chunked_upload_without_content_length_is_accepted(client: httpx.Client) -> None:
    def body() -> Iterator[bytes]:
        yield (
            b'--chunky\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n"
        )
        for start in range(0, len(FILM), 1000):
            yield FILM[start : start + 1000]
        yield b"\r\n--chunky--\r\n"

    request = client.build_request(
        "POST",
        "/v1/predict",
        content=body(),
        headers={"content-type": "multipart/form-data; boundary=chunky"},
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    response = client.send(request)
    assert response.status_code == 200, response.text
    assert strict_json(response)["image"] == {"source_format": "png", "width": 80, "height": 96}


# The deadline's steps with real awaits and a real worker thread: what each overrun answers.


def _overrun(step: str, seconds: float) -> ServiceError:
    metrics = Metrics()

    async def run() -> ServiceError:
        deadline = Deadline(seconds, metrics)
        error = upload_timeout if step == "upload" else processing_timeout
        try:
            with deadline.step(step, error):
                if step == "upload":
                    await anyio.sleep(30)  # a read that would wait for ever: cancelled at the deadline
                else:
                    await anyio.to_thread.run_sync(time.sleep, 0.2)  # not interruptible: late, then refused
        except ServiceError as exc:
            return exc
        raise AssertionError("the deadline did not fire")

    error = anyio.run(run)
    assert metrics.registry.get_sample_value("cxr_deadline_exceeded_total", {"step": step}) == 1
    return error


def test_an_upload_past_the_deadline_is_408_and_closes_the_connection() -> None:
    error = _overrun("upload", 0.05)
    assert (error.status, error.code, error.headers) == (408, "request_timeout", {"Connection": "close"})


def test_processing_past_the_deadline_is_504_once_the_thread_returns() -> None:
    error = _overrun("processing", 0.05)
    assert (error.status, error.code) == (504, "deadline_exceeded")


def test_waiting_past_the_deadline_is_503_and_leaves_no_one_queued() -> None:
    metrics = Metrics()

    async def run() -> ServiceError:
        admission = Admission(running=1, queued=4, metrics=metrics)
        holder_in = anyio.Event()
        release = anyio.Event()

        async def hold() -> None:
            async with admission.slot(Deadline(30, metrics)):
                holder_in.set()
                await release.wait()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(hold)
            await holder_in.wait()
            try:
                async with admission.slot(Deadline(0.05, metrics)):
                    raise AssertionError("admitted while the only slot was held")
            except ServiceError as exc:
                error = exc
            assert metrics.registry.get_sample_value("cxr_admission_waiting") == 0
            release.set()
        async with admission.slot(Deadline(1, metrics)):  # the slot was handed back
            pass
        return error

    error = anyio.run(run)
    assert (error.status, error.code, error.headers) == (
        503,
        "overloaded",
        {"Retry-After": str(RETRY_AFTER_S)},
    )
    assert metrics.registry.get_sample_value("cxr_deadline_exceeded_total", {"step": "queue"}) == 1
