"""The load benchmark's code runs end to end, briefly, on the tiny model (its figures are not judged)."""

import asyncio
from pathlib import Path

import pydicom
import pytest

from bench.films import FULL_SIZE, full_size_dicom, full_size_png
from bench.http_load import drive, predict_request
from bench.load import DEFAULT_MODES, LoadConfig, Mode, ceiling_layouts, format_report, main, run_load
from bench.service_process import REPO_ROOT, running_service
from service.contract import SourceFormat, decode_image
from service.inference.cpus import available_cpus


def test_a_short_load_run_reports_every_cell_and_ratio(tiny_model_dir: Path, tiny_dataset: Path) -> None:
    config = LoadConfig(
        model_dir=tiny_model_dir,
        films_dir=tiny_dataset,
        concurrencies=(1, 2),
        kinds=("png-224", "dicom-full"),
        # "before" runs this same checkout as if it were another commit's: the path is exercised.
        modes=(Mode("before", {}, REPO_ROOT), *DEFAULT_MODES),
        overlay_concurrencies=(2,),
        seconds=0.6,
        warmup_s=0.2,
        max_films=6,
        full_size_films=1,
        ceiling_seconds=0.05,
    )
    report = run_load(config)

    assert set(report["services"]) == {"before", "batched", "unbatched"}
    assert all(s["rss_mb_at_rest"] > 0 for s in report["services"].values())
    assert set(report["ceiling"]) == {"b1", "b2", "b8", "b32"}
    for ceiling in report["ceiling"].values():
        # Timed in every layout the service could use; the best one is the ceiling.
        assert set(ceiling["layouts"]) == set(ceiling_layouts(available_cpus()))
        assert ceiling["images_per_s"] == max(v["images_per_s"] for v in ceiling["layouts"].values())
    cells = {(c["mode"], c["kind"], c["concurrency"]) for c in report["cells"]}
    for mode in ("before", "batched", "unbatched"):
        assert {(mode, "png-224", 1), (mode, "png-224", 2), (mode, "dicom-full", 2)} <= cells
        assert (mode, "png-224+overlay", 2) in cells
    for cell in report["cells"]:
        assert cell["errors"] == 0 and cell["refusals"] == {}, cell
        assert cell["ok"] > 0 and cell["images_per_s"] > 0 and cell["rss_mb_peak"] > 0
        assert cell["latency_ms"]["p50"] <= cell["latency_ms"]["p99"]
        if cell["mode"] == "unbatched":
            assert cell["mean_batch"] == 1.0  # CXR_MAX_BATCH_SIZE=1 really reached the service
        # Where the time went, from the service's own stage metrics, inside what the client saw.
        assert cell["stages_ms"]["inference"] > 0 and cell["stages_ms"]["decode"] > 0
        assert cell["server_ms"] > 0 and cell["client_ms"] > 0
        assert ("colour_blend" in cell["stages_ms"]) == cell["kind"].endswith("+overlay")
    assert "batched / unbatched png-224 c2" in report["ratios"]
    assert "batched / before png-224+overlay c2" in report["ratios"]
    assert "batched png-224 c1 / ceiling b1" in report["ratios"]
    assert "batched png-224+overlay c2 / ceiling b2" in report["ratios"]
    # The stricter ratio divides by the best raw figure at any batch up to the concurrency.
    best = max(report["ceiling"]["b1"]["images_per_s"], report["ceiling"]["b2"]["images_per_s"])
    cell = next(
        c for c in report["cells"] if (c["mode"], c["kind"], c["concurrency"]) == ("batched", "png-224", 2)
    )
    assert report["ratios"]["batched png-224 c2 / best raw <= b2"] == round(cell["images_per_s"] / best, 3)
    text = format_report(report)
    assert "ratios:" in text and "mean ms per request by stage" in text


def test_full_size_films_are_what_they_claim(tiny_dataset: Path) -> None:
    source = next(tiny_dataset.rglob("*.png")).read_bytes()
    png = decode_image(full_size_png(source))
    assert (png.source_format, png.width, png.height) == (SourceFormat.PNG, *FULL_SIZE)
    dicom = full_size_dicom(source)
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(dicom))
    assert (ds.Modality, ds.BodyPartExamined, ds.ViewPosition, ds.BitsStored) == ("DX", "CHEST", "PA", 12)
    assert "PatientName" not in ds and "PatientID" not in ds
    assert decode_image(dicom).width == FULL_SIZE[0]


def test_the_load_generator_counts_refusals_and_errors_apart(tiny_model_dir: Path) -> None:
    with running_service(tiny_model_dir) as service:
        bad_key = predict_request(service.url, b"\x89PNG", {"Authorization": "Bearer wrong-key-0123456789"})
        result = asyncio.run(drive(service.url, [bad_key], concurrency=2, seconds=0.5, warmup_s=0.1))
    assert result.statuses.keys() == {401} and result.refusals.keys() == {"invalid_api_key"}
    assert result.errors == 0 and not result.latencies_ms


def test_default_modes_compare_batching_with_none() -> None:
    assert [m.env for m in DEFAULT_MODES] == [{}, {"CXR_MAX_BATCH_SIZE": "1"}]


def test_without_films_it_skips(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--model", str(tiny_model_dir), "--films", str(tmp_path / "absent")]) == 0
    assert "SKIPPED" in capsys.readouterr().err
