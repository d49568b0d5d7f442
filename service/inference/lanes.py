"""How the CPUs are split between batches running at once ("lanes") and ONNX Runtime's threads.

Measured on the 2-CPU machine (``bench.load``'s raw ceiling by layout,
reports/bench/load-2026-12-06-png224-lanes*): two single-threaded runs side by side give about 205
films/s at batch 1 or 8, where one run on two threads gives 150-195, and the service gains more than
that, because a multi-threaded run waits at every layer for its slowest thread, and HTTP and
decoding take cores from it. So on the CPU the default is one lane per CPU, each
with one thread, up to ``MAX_AUTO_LANES`` (more lanes than that was not measured, and each running
batch holds its own activations). On a GPU the device serialises the runs: one lane, every CPU for
ONNX Runtime's CPU-side work.
"""

from dataclasses import dataclass

from service.inference.cpus import available_cpus
from service.settings import Settings

MAX_AUTO_LANES = 4


@dataclass(frozen=True)
class LaneLayout:
    lanes: int  # batches that may run at once, each on its own worker thread
    threads: int  # ONNX Runtime intra-op threads of the session, used by each run


def lane_layout(settings: Settings, on_gpu: bool, cpus: int | None = None) -> LaneLayout:
    """``CXR_INFERENCE_LANES`` and ``CXR_INTRA_OP_THREADS`` where set; otherwise the defaults above,
    sharing out ``cpus`` (default: the CPUs this process may use)."""
    cpus = cpus or available_cpus()
    lanes = settings.inference_lanes or (1 if on_gpu else min(cpus, MAX_AUTO_LANES))
    threads = settings.intra_op_threads or max(1, cpus // lanes)
    return LaneLayout(lanes=lanes, threads=threads)
