"""The soak benchmark's code runs end to end, briefly, on the tiny model (its figures are not judged)."""

from pathlib import Path

import pytest

from bench.soak import SoakConfig, format_report, load_films, main, run_soak
from tests.factories import chest_like, png_bytes


def test_a_short_soak_reports_every_figure_and_no_errors(tiny_model_dir: Path) -> None:
    films = tuple(png_bytes(chest_like(seed=seed)) for seed in range(6))
    config = SoakConfig(
        model_dir=tiny_model_dir, films=films, duration_s=3.0, concurrency=2, sample_every_s=0.5, warmup_s=1.0
    )
    report = run_soak(config)

    assert report["model"]["version"] == "1"
    requests = report["requests"]
    assert requests["ok"] > 0 and requests["ok"] == requests["answered"]
    assert (requests["errors"], requests["error_kinds"], requests["refused"]) == (0, {}, {})
    assert report["checks"]["zero_errors"] is True
    assert report["server"]["inferences"] == requests["ok"]
    assert set(report["latency_ms"]) == {"p50", "p95", "p99", "max"}
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"] <= report["latency_ms"]["max"]
    memory = report["memory"]
    assert memory["available"] and memory["steady_samples"] >= 2
    assert 0 < memory["rss_mb_start"] <= memory["rss_mb_max"]
    samples = report["samples"]
    assert [s["requests"] for s in samples] == sorted(s["requests"] for s in samples)
    assert report["verdict"] in {"pass", "fail"}
    text = format_report(report)
    assert "verdict:" in text and "RSS slope after warm-up" in text


def test_films_are_spread_over_the_whole_folder(tmp_path: Path) -> None:
    for name in ("A", "B"):
        (tmp_path / name).mkdir()
        for i in range(10):
            (tmp_path / name / f"{i:02d}.png").write_bytes(f"{name}{i}".encode())
    (tmp_path / "notes.txt").write_text("not a film")
    films = load_films(tmp_path, 4)
    assert films == (b"A0", b"A6", b"B3", b"B9")


def test_without_films_it_skips_cleanly(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--model", str(tiny_model_dir), "--films", str(tmp_path / "absent")]) == 0
    assert "SKIPPED" in capsys.readouterr().err
