"""The PACS burst benchmark's code runs end to end, briefly, on the tiny model (figures not judged)."""

from pathlib import Path

import pytest

from bench.orthanc import PACS_TOOLS, missing_tools
from bench.pacs_burst import BurstConfig, format_report, run_burst
from tests.factories import chest_like, png_bytes


def test_a_small_burst_is_all_delivered_once(tiny_model_dir: Path) -> None:
    missing = missing_tools(*PACS_TOOLS)
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (apt-get install orthanc orthanc-dicomweb dcmtk)")
    films = tuple(png_bytes(chest_like(64, 64, seed=seed)) for seed in range(6))
    report = run_burst(BurstConfig(tiny_model_dir, films, per_study=3, senders=2, workers=2))
    assert report["senders_ok"] and report["checks"] == {"zero_lost": True, "nothing_twice": True}
    assert report["jobs"] == report["delivered"] == 6 and report["results_in_pacs"] == 12
    latency = report["film_to_result_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["max"]
    assert "films/s" in format_report(report)
