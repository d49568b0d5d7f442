"""Dynamic micro-batching on the real tiny model: same answers as one film at a time, batches really
form under concurrency, a film that breaks ONNX Runtime fails alone, and nothing is left running."""

import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from service.inference.batching import BatchPolicy, MicroBatcher
from service.inference.runtime import Inference, InferenceError, ModelRuntime
from service.main import create_app
from service.observability.threads import LANE_THREAD
from service.settings import Settings
from tests.factories import chest_like, png_bytes
from tests.service.live import AUTH_HEADERS, ThreadedServer, metric_value, post_file
from tests.service.model_edits import add_failure_guard

pytest.importorskip("onnx")

LONG_WAIT_MS = (
    1_000.0  # the most the settings allow; long enough that submits from one thread land in one batch
)


def _runtime(model_dir: Path, **settings: object) -> ModelRuntime:
    return ModelRuntime.load(Settings(model_dir=model_dir, execution_provider="cpu", **settings))  # type: ignore[arg-type]


def _films(runtime: ModelRuntime, n: int, *, bright: set[int] | None = None) -> list[npt.NDArray[np.float32]]:
    films = []
    for seed in range(n):
        plane = _bright_plane() if bright and seed in bright else chest_like(seed=seed)
        tensor, _ = runtime.prepare(png_bytes(plane), max_pixels=10_000_000)
        films.append(tensor)
    return films


def _bright_plane() -> npt.NDArray[np.float64]:
    plane = np.ones((64, 64))
    plane[:4, :32] = 0.0  # keeps the percentile stretch from flattening it: model input mean ~0.97
    return plane


def _assert_same(batched: Inference, alone: Inference) -> None:
    np.testing.assert_allclose(batched.probabilities, alone.probabilities, atol=1e-5)
    np.testing.assert_allclose(batched.cams, alone.cams, rtol=1e-4, atol=1e-5 * float(alone.cams.max()))
    assert (batched.ood_score is None) == (alone.ood_score is None)
    if alone.ood_score is not None:
        assert batched.ood_score == pytest.approx(alone.ood_score, rel=1e-4, abs=1e-5)


@pytest.fixture(scope="module")
def guarded_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = Path(shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("guarded") / "model"))
    add_failure_guard(model_dir)
    return model_dir


def test_a_batch_gives_each_film_what_it_gets_alone(tiny_ood_model_dir: Path) -> None:
    runtime = _runtime(tiny_ood_model_dir)
    films = _films(runtime, 5)
    batched = runtime.infer_batch(np.stack(films))
    assert len(batched) == 5
    for film, result in zip(films, batched, strict=True):
        assert isinstance(result, Inference) and result.batch_size == 5
        _assert_same(result, runtime.infer(film))
    # Different films really gave different answers: the rows were not mixed up or broadcast.
    assert len({round(float(r.probabilities[0]), 6) for r in batched if isinstance(r, Inference)}) > 1


def test_concurrent_films_share_one_run(tiny_model_dir: Path) -> None:
    runtime = _runtime(tiny_model_dir, max_batch_size=4, batch_wait_ms=LONG_WAIT_MS)
    films = _films(runtime, 4)
    futures = [runtime.submit(film) for film in films]
    results = [future.result(timeout=30) for future in futures]
    assert [r.batch_size for r in results] == [4, 4, 4, 4]
    for film, result in zip(films, results, strict=True):
        _assert_same(result, runtime.infer(film))


def test_a_full_batch_runs_without_waiting_out_the_delay(tiny_model_dir: Path) -> None:
    runtime = _runtime(tiny_model_dir)
    batcher: MicroBatcher[Inference] = MicroBatcher(
        runtime.infer_batch, BatchPolicy(max_batch=2, max_wait_s=60)
    )
    futures = [batcher.submit(film) for film in _films(runtime, 2)]
    # Well under the 60 s fill delay: the batch was full, so it ran at once.
    assert [f.result(timeout=30).batch_size for f in futures] == [2, 2]


def test_no_batching_runs_every_film_alone(tiny_model_dir: Path) -> None:
    runtime = _runtime(tiny_model_dir, max_batch_size=1, batch_wait_ms=LONG_WAIT_MS)
    futures = [runtime.submit(film) for film in _films(runtime, 3)]
    assert [f.result(timeout=30).batch_size for f in futures] == [1, 1, 1]


def test_a_film_that_breaks_the_run_fails_alone(guarded_model: Path) -> None:
    runtime = _runtime(guarded_model, max_batch_size=3, batch_wait_ms=LONG_WAIT_MS)
    films = _films(runtime, 3, bright={1})
    with pytest.raises(InferenceError):  # the guard really fails a batch holding the bright film
        runtime.infer_batch(np.stack(films))
    futures = [runtime.submit(film) for film in films]
    with pytest.raises(InferenceError, match="ONNX Runtime run failed"):
        futures[1].result(timeout=30)
    for index in (0, 2):
        result = futures[index].result(timeout=30)
        assert result.batch_size == 1  # re-run alone after the shared run failed
        _assert_same(result, runtime.infer(films[index]))


def test_a_cancelled_film_is_not_run(tiny_model_dir: Path) -> None:
    runtime = _runtime(tiny_model_dir, max_batch_size=8, batch_wait_ms=500.0)
    first, second = _films(runtime, 2)
    kept, dropped = runtime.submit(first), runtime.submit(second)
    assert dropped.cancel()  # as when a request's deadline passes while its film is queued
    assert kept.result(timeout=30).batch_size == 1
    with pytest.raises(CancelledError):
        dropped.result()


def _batcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == LANE_THREAD]


def test_the_worker_thread_ends_when_idle_and_comes_back(tiny_model_dir: Path) -> None:
    runtime = _runtime(tiny_model_dir)
    (film,) = _films(runtime, 1)
    batcher: MicroBatcher[Inference] = MicroBatcher(
        runtime.infer_batch, BatchPolicy(max_batch=4, idle_s=0.05)
    )
    before = set(_batcher_threads())
    assert batcher.submit(film).result(timeout=30).batch_size == 1
    deadline = time.monotonic() + 10
    while set(_batcher_threads()) - before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not set(_batcher_threads()) - before, "the idle worker thread did not exit"
    assert batcher.submit(film).result(timeout=30).batch_size == 1


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="no /proc (not Linux)")
def test_a_lane_carries_its_name_where_the_os_shows_threads() -> None:
    """top -H, ps -L and bench.load tell the lanes apart by the name in /proc/<pid>/task/*/comm."""
    names: list[str] = []

    def run(films: npt.NDArray[np.float32]) -> list[int]:
        names.append(Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip())
        return [0] * len(films)

    batcher: MicroBatcher[int] = MicroBatcher(run, BatchPolicy(max_batch=1, idle_s=0.05))
    assert batcher.submit(np.zeros((1, 4, 4), np.float32)).result(timeout=30) == 0
    assert names == [LANE_THREAD]


def test_a_bug_in_the_run_fails_the_waiting_requests_instead_of_hanging() -> None:
    def wrong_row_count(films: npt.NDArray[np.float32]) -> list[int | Exception]:
        return [0] * (len(films) + 1)

    batcher: MicroBatcher[int] = MicroBatcher(wrong_row_count, BatchPolicy(max_batch=2, max_wait_s=1.0))
    film = np.zeros((1, 4, 4), dtype=np.float32)
    futures: list[Future[int]] = [batcher.submit(film), batcher.submit(film)]
    for future in futures:
        with pytest.raises(ValueError):
            future.result(timeout=30)
    assert batcher.submit(film) is not None  # still accepting work


def test_the_live_service_batches_concurrent_requests(tiny_model_dir: Path, api_keys_file: Path) -> None:
    settings = Settings(
        model_dir=tiny_model_dir,
        execution_provider="cpu",
        api_keys_file=api_keys_file,
        max_batch_size=4,
        batch_wait_ms=500.0,
    )
    uploads = [png_bytes(chest_like(seed=seed)) for seed in range(4)]
    with (
        ThreadedServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url, timeout=60.0, headers=AUTH_HEADERS) as client,
    ):
        alone = [post_file(client, data, params={"overlay": "false"}).json() for data in uploads]
        runs_before = metric_value(client, "cxr_inference_batch_size_count")
        with ThreadPoolExecutor(max_workers=4) as pool:
            together = list(
                pool.map(lambda data: post_file(client, data, params={"overlay": "false"}), uploads)
            )
        assert [r.status_code for r in together] == [200] * 4
        for single, response in zip(alone, together, strict=True):
            for name, p in single["probabilities"].items():
                assert response.json()["probabilities"][name] == pytest.approx(p, abs=1e-5)
        served = metric_value(client, "cxr_inference_batch_size_count") - runs_before
        films = metric_value(client, "cxr_inference_batch_size_sum") - len(uploads)  # sequential: 1 each
        assert served == 4
        assert films > served, "no two concurrent requests shared a run"


def _sleepy_run(seconds: float) -> Callable[[npt.NDArray[np.float32]], list[int | Exception]]:
    def run(films: npt.NDArray[np.float32]) -> list[int | Exception]:
        time.sleep(seconds)  # stands for session.run: what the window is weighed against
        return [len(films)] * len(films)

    return run


def test_the_adaptive_window_stays_shut_when_idle() -> None:
    batcher: MicroBatcher[int] = MicroBatcher(
        _sleepy_run(0.02), BatchPolicy(max_batch=8, max_wait_s=0.5, adaptive=True)
    )
    film = np.zeros((1, 4, 4), dtype=np.float32)
    assert batcher.window_s(1) == 0.0  # nothing measured yet
    for _ in range(3):  # films far apart: each runs alone, at once
        started = time.monotonic()
        assert batcher.submit(film).result(timeout=30) == 1
        assert time.monotonic() - started < 0.25  # a run (20 ms), never the 500 ms ceiling
        time.sleep(0.1)
    assert batcher.window_s(1) == 0.0  # arrivals 120 ms apart, a run 20 ms: not worth waiting for


def test_the_adaptive_window_opens_with_the_arrival_rate_and_fills_batches() -> None:
    run_s = 0.2
    batcher: MicroBatcher[int] = MicroBatcher(
        _sleepy_run(run_s), BatchPolicy(max_batch=4, max_wait_s=1.0, adaptive=True)
    )
    film = np.zeros((1, 4, 4), dtype=np.float32)
    assert batcher.submit(film).result(timeout=30) == 1  # one run measured
    sizes: list[int] = []
    for _ in range(4):  # bursts of 4 films back to back: the window lets a burst share one run
        futures = [batcher.submit(film) for _ in range(4)]
        sizes = [f.result(timeout=30) for f in futures]
    window = batcher.window_s(1)
    assert 0.0 < window <= 0.5 * run_s * 1.5  # open, and about half a run at most
    assert sizes == [4, 4, 4, 4], sizes


def test_a_fixed_window_always_waits_its_time() -> None:
    batcher: MicroBatcher[int] = MicroBatcher(_sleepy_run(0.0), BatchPolicy(max_batch=4, max_wait_s=0.2))
    assert batcher.window_s(1) == 0.2
    started = time.monotonic()
    assert batcher.submit(np.zeros((1, 4, 4), dtype=np.float32)).result(timeout=30) == 1
    assert time.monotonic() - started >= 0.19


def _meeting_point(parties: int) -> Callable[[npt.NDArray[np.float32]], list[int | Exception]]:
    """A run that returns only once ``parties`` runs are inside it together (or fails after 2 s)."""
    barrier = threading.Barrier(parties, timeout=2.0)

    def run(films: npt.NDArray[np.float32]) -> list[int | Exception]:
        barrier.wait()
        return [len(films)] * len(films)

    return run


def test_two_lanes_run_two_batches_at_once() -> None:
    batcher: MicroBatcher[int] = MicroBatcher(_meeting_point(2), BatchPolicy(max_batch=1, lanes=2))
    film = np.zeros((1, 4, 4), dtype=np.float32)
    futures = [batcher.submit(film), batcher.submit(film)]
    assert [f.result(timeout=30) for f in futures] == [1, 1]  # the barrier of two was met


def test_one_lane_never_runs_two_batches_at_once() -> None:
    batcher: MicroBatcher[int] = MicroBatcher(_meeting_point(2), BatchPolicy(max_batch=1, lanes=1))
    film = np.zeros((1, 4, 4), dtype=np.float32)
    futures = [batcher.submit(film), batcher.submit(film)]
    for future in futures:  # alone in the run, each breaks the barrier: the runs were one at a time
        with pytest.raises(threading.BrokenBarrierError):
            future.result(timeout=30)


def test_a_second_lane_starts_only_when_the_first_is_busy() -> None:
    runs: list[int] = []

    def run(films: npt.NDArray[np.float32]) -> list[int | Exception]:
        runs.append(len(films))
        return [0] * len(films)

    batcher: MicroBatcher[int] = MicroBatcher(run, BatchPolicy(max_batch=8, max_wait_s=0.5, lanes=2))
    film = np.zeros((1, 4, 4), dtype=np.float32)
    before = set(_batcher_threads())
    # The first lane is filling its window, not running: the next films join its batch.
    futures = [batcher.submit(film) for _ in range(3)]
    assert [f.result(timeout=30) for f in futures] == [0, 0, 0]
    assert runs == [3]
    assert len(set(_batcher_threads()) - before) == 1
