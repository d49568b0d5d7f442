"""When the service counts as idle, and what runs then: the heap trim waits until it stays idle."""

import asyncio
import threading

import anyio

from service.inference.admission import Admission, Deadline
from service.inference.memory import trim_heap
from service.observability.metrics import Metrics

DELAY_S = 0.2


class Calls:
    """The service's own ``on_idle``, the heap trim, with a count of when and where it ran."""

    def __init__(self) -> None:
        self.count = 0
        self.threads: set[str] = set()
        self.ran = threading.Event()

    def __call__(self) -> None:
        trim_heap()
        self.count += 1
        self.threads.add(threading.current_thread().name)
        self.ran.set()


async def _predict(admission: Admission, metrics: Metrics, seconds: float = 0.0) -> None:
    async with admission.slot(Deadline(30, metrics)):
        await asyncio.sleep(seconds)


def test_on_idle_runs_once_the_service_has_stayed_idle_for_the_delay() -> None:
    metrics, calls = Metrics(), Calls()

    async def run() -> list[int]:
        admission = Admission(running=2, queued=2, metrics=metrics, on_idle=calls, idle_delay_s=DELAY_S)
        await _predict(admission, metrics)
        seen = [calls.count]  # the last film has just left: not yet
        await asyncio.sleep(DELAY_S / 2)
        seen.append(calls.count)
        await asyncio.sleep(DELAY_S)
        seen.append(calls.count)
        return seen

    assert anyio.run(run, backend="asyncio") == [0, 0, 1]
    assert calls.threads and threading.main_thread().name not in calls.threads


def test_films_one_after_another_within_the_delay_never_trigger_it() -> None:
    """A client posting films back to back leaves the service idle for a moment between each answer
    and the next upload: trimming there made every film fault its buffers back in."""
    metrics, calls = Metrics(), Calls()

    async def run() -> int:
        admission = Admission(running=1, queued=1, metrics=metrics, on_idle=calls, idle_delay_s=DELAY_S)
        for _ in range(8):
            await _predict(admission, metrics, seconds=0.01)
            await asyncio.sleep(DELAY_S / 4)  # the gap until the next film's slot
        during = calls.count
        await asyncio.sleep(DELAY_S * 2)
        return during

    assert anyio.run(run, backend="asyncio") == 0
    assert calls.count == 1  # and once the films stop, exactly once


def test_a_prediction_still_running_keeps_the_service_busy() -> None:
    metrics, calls = Metrics(), Calls()

    async def run() -> int:
        admission = Admission(running=2, queued=2, metrics=metrics, on_idle=calls, idle_delay_s=DELAY_S)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_predict, admission, metrics, DELAY_S * 3)  # long
            await asyncio.sleep(0.01)
            await _predict(admission, metrics)  # short: leaves while the long one runs
            await asyncio.sleep(DELAY_S * 2)
            during = calls.count
        return during

    assert anyio.run(run, backend="asyncio") == 0


def test_without_a_delay_it_runs_as_the_last_film_leaves() -> None:
    metrics, calls = Metrics(), Calls()

    async def run() -> None:
        admission = Admission(running=1, queued=1, metrics=metrics, on_idle=calls, idle_delay_s=0.0)
        await _predict(admission, metrics)
        await asyncio.to_thread(calls.ran.wait, 5.0)

    anyio.run(run, backend="asyncio")
    assert calls.count == 1
