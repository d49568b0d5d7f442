"""The ceiling benchmark's code runs end to end on the tiny model (structure, not speed)."""

from pathlib import Path

import pytest

from bench.ceiling import format_report, run_benchmark


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
