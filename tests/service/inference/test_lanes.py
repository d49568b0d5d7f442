"""How the CPUs are shared out between lanes (batches running at once) and ONNX Runtime's threads."""

from pathlib import Path

import pytest

from service.inference.cpus import available_cpus
from service.inference.lanes import MAX_AUTO_LANES, LaneLayout, lane_layout
from service.inference.providers import session_options
from service.inference.runtime import ModelRuntime
from service.settings import Settings


@pytest.mark.parametrize(
    ("cpus", "expected"),
    [
        (1, LaneLayout(1, 1)),
        (2, LaneLayout(2, 1)),
        (4, LaneLayout(4, 1)),
        (16, LaneLayout(MAX_AUTO_LANES, 4)),
    ],
)
def test_on_the_cpu_each_lane_gets_its_share_of_the_cpus(cpus: int, expected: LaneLayout) -> None:
    assert lane_layout(Settings(), on_gpu=False, cpus=cpus) == expected


def test_on_a_gpu_one_lane_keeps_every_cpu() -> None:
    assert lane_layout(Settings(), on_gpu=True, cpus=8) == LaneLayout(1, 8)


def test_settings_win_over_the_defaults() -> None:
    assert lane_layout(Settings(inference_lanes=1), on_gpu=False, cpus=8) == LaneLayout(1, 8)
    assert lane_layout(Settings(inference_lanes=3), on_gpu=False, cpus=8) == LaneLayout(3, 2)
    assert lane_layout(Settings(intra_op_threads=5), on_gpu=False, cpus=2) == LaneLayout(2, 5)
    assert lane_layout(Settings(inference_lanes=4), on_gpu=True, cpus=2) == LaneLayout(4, 1)


def test_the_session_and_the_batcher_follow_the_layout(tiny_model_dir: Path) -> None:
    settings = Settings(model_dir=tiny_model_dir, execution_provider="cpu", inference_lanes=2)
    assert session_options(settings).intra_op_num_threads == lane_layout(settings, on_gpu=False).threads
    runtime = ModelRuntime.load(settings)
    assert runtime.lanes == 2
    assert runtime.intra_op_threads == lane_layout(settings, on_gpu=False).threads


def test_a_gpu_plan_sizes_the_session_for_one_lane_so_a_fallback_to_the_cpu_cannot_oversubscribe() -> None:
    # auto with CUDA installed plans for the GPU; if ORT then falls back to the CPU, the session
    # already has every CPU as threads, and the runtime keeps one lane (open_session returns the plan).
    assert session_options(Settings(), on_gpu=True).intra_op_num_threads == available_cpus()
    assert lane_layout(Settings(), on_gpu=True).lanes == 1
