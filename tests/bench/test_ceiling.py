"""The ceiling benchmark's code runs end to end on the tiny model (structure, not speed)."""

import time
from functools import partial
from pathlib import Path

import pytest

from bench.ceiling import Variant, format_report, run_benchmark, time_variants


def test_ceiling_benchmark_reports_every_variant_and_ratio(
    tiny_ood_model_dir: Path, tiny_run_dir: Path, tiny_dataset: Path
) -> None:
    report = run_benchmark(
        tiny_ood_model_dir, tiny_dataset, torch_run=tiny_run_dir, batches=(1, 4), seconds=0.05, rounds=1
    )
    names = set(report["results"])
    for batch in (1, 4):
        assert {
            f"fp32 full graph b{batch}",
            f"fp32 forward only b{batch}",
            f"fp32 forward + cam b{batch}",
        } <= names
        assert {f"torch forward b{batch}", f"torch grad-cam package b{batch}"} <= names
    assert all(r["calls"] >= 1 and r["images_per_s"] > 0 for r in report["results"].values())
    assert report["ratios"]["grad-cam package / in-graph cam latency b4"] > 0
    assert "cam overhead b1 (forward+cam / forward latency - 1)" in format_report(report)


def test_missing_film_folder_is_an_error_not_a_silent_pass(tiny_ood_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no films"):
        run_benchmark(tiny_ood_model_dir, tmp_path, batches=(1,), seconds=0.01, rounds=1)


def test_a_variant_with_lanes_runs_its_step_on_that_many_threads_at_once() -> None:
    # A step that waits 20 ms without holding the GIL, as session.run does: two lanes do twice the work.
    one, two = (
        Variant("one", 1, partial(time.sleep, 0.02)),
        Variant("two", 1, partial(time.sleep, 0.02), lanes=2),
    )
    results = time_variants([one, two], seconds=0.4, rounds=2)
    assert results["two"]["images_per_s"] > 1.6 * results["one"]["images_per_s"]
    assert results["one"]["images_per_s"] == pytest.approx(50, rel=0.3)
