"""The load benchmark's code runs end to end, briefly, on the tiny model (its figures are not judged)."""

import argparse
import asyncio
import json
import os
import shutil
from contextlib import ExitStack
from pathlib import Path

import onnxruntime as ort
import pydicom
import pytest

from bench.films import FULL_SIZE, RASTER_SUFFIXES, film_paths, full_size_dicom, full_size_png
from bench.http_load import drive, predict_request
from bench.load import (
    DEFAULT_MODES,
    CpuSnapshot,
    LoadConfig,
    Mode,
    ceiling_layouts,
    cpu_per_film,
    format_report,
    main,
    measure_ceiling,
    on_provider,
    parse_mode,
    run_load,
    start_mode,
)
from bench.service_process import REPO_ROOT, cpu_shares, running_service
from service.contract import SourceFormat, decode_image
from service.inference.cpus import available_cpus
from service.observability.threads import LANE_THREAD
from service.store.errors import ModelLoadError


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
        cpu = cell["cpu_ms_per_film"]  # read from /proc: 10 ms ticks, so only its shape is checked
        assert set(cpu) == {"lanes", "event_loop", "other_threads", "client", "busy_cpus"}
        assert all(v >= 0 for v in cpu.values()) and cpu["busy_cpus"] > 0
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
    assert "CPU ms per answered film by thread" in text
    assert "one single-threaded run per CPU" in text and report["config"]["provider"] == "cpu"
    on_gpu = {**report, "config": {**report["config"], "provider": "cuda"}}
    assert "one run at a time on cuda, the service's provider list" in format_report(on_gpu)


def test_cpu_per_film_splits_the_service_s_threads_by_role() -> None:
    """The main thread is the event loop, threads named cxr-lane the lanes, the rest other threads;
    a thread born in the window counts from zero, one that ended is not in the second reading."""
    pid = 100
    before = CpuSnapshot({100: ("python", 1.0), 101: (LANE_THREAD, 5.0), 102: ("python", 2.0)}, 10.0)
    after = CpuSnapshot(
        {100: ("python", 1.5), 101: (LANE_THREAD, 7.0), 103: (LANE_THREAD, 1.0), 104: ("python", 0.25)},
        10.3,
    )
    split = cpu_per_film(before, after, {pid}, films=250, seconds=3.0)
    assert split == {
        "lanes": 12.0,  # (2.0 + 1.0) s / 250 films
        "event_loop": 2.0,
        "other_threads": 1.0,
        "client": 1.2,
        "busy_cpus": 1.35,  # (3.0 + 0.5 + 0.25 + 0.3) s / 3 s
    }
    assert cpu_per_film(before, after, {pid}, films=0, seconds=3.0) is None


def test_cpu_per_film_counts_every_process_main_thread_as_an_event_loop() -> None:
    before = CpuSnapshot({100: ("python", 1.0), 200: ("python", 1.0), 201: (LANE_THREAD, 1.0)}, 0.0)
    after = CpuSnapshot({100: ("python", 2.0), 200: ("python", 2.0), 201: (LANE_THREAD, 5.0)}, 0.0)
    split = cpu_per_film(before, after, {100, 200}, films=1000, seconds=4.0)
    assert split is not None and (split["event_loop"], split["lanes"], split["other_threads"]) == (
        2.0,
        4.0,
        0.0,
    )


def test_a_mode_names_its_processes_after_an_at_sign() -> None:
    assert parse_mode("percpu@2:CXR_DECODE_THREADS=1") == Mode(
        "percpu@2", {"CXR_DECODE_THREADS": "1"}, processes=2
    )
    assert parse_mode("batched").processes == 1
    for bad in ("percpu@", "percpu@two", "percpu@0"):
        with pytest.raises(argparse.ArgumentTypeError, match="number of processes"):
            parse_mode(bad)


@pytest.mark.skipif(
    available_cpus() < 2 or shutil.which("taskset") is None, reason="needs 2 CPUs and taskset"
)
def test_a_mode_of_pinned_processes_runs_one_service_per_cpu_share(
    tiny_model_dir: Path, tiny_dataset: Path
) -> None:
    """Each process sees only its share of the CPUs and sizes its lanes to it, the connections are
    spread over all of them, and the cell's figures are theirs together."""
    config = LoadConfig(
        model_dir=tiny_model_dir,
        films_dir=tiny_dataset,
        concurrencies=(4,),
        kinds=("png-224",),
        modes=(DEFAULT_MODES[0], Mode("percpu@2", {}, processes=2)),
        overlay_kinds=(),
        seconds=0.6,
        warmup_s=0.2,
        max_films=4,
        ceiling_seconds=0.05,
    )
    shares = cpu_shares(2)
    with ExitStack() as stack:
        group = start_mode(stack, tiny_model_dir, config.modes[1])
        for service, share in zip(group, shares, strict=True):
            assert os.sched_getaffinity(service.pid) == set(share)
            ready = next(
                record
                for line in service.log_path.read_text().splitlines()
                if line.startswith("{") and (record := json.loads(line)).get("msg") == "ready"
            )
            # Sized to its share as in a pod with that CPU limit: on two CPUs, one lane of one thread
            # and one decode thread each.
            sizing = (ready["inference_lanes"], ready["intra_op_threads"], ready["decode_threads"])
            assert sizing == (min(len(share), 4), 1, len(share))
    report = run_load(config)
    assert report["services"]["percpu@2"]["processes"] == 2
    cell = next(c for c in report["cells"] if c["mode"] == "percpu@2")
    assert cell["ok"] > 0 and cell["errors"] == 0 and cell["refusals"] == {}
    assert cell["cpu_ms_per_film"]["event_loop"] > 0 and cell["cpu_ms_per_film"]["lanes"] > 0
    assert "percpu@2 / batched png-224 c4" in report["ratios"]
    assert "2 processes, each on its own 1/2 of the CPUs" in format_report(report)


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


def test_a_gpu_run_starts_every_mode_on_its_provider_unless_the_mode_names_one() -> None:
    assert on_provider(Mode("batched", {}), "cpu") == Mode("batched", {})
    batched = on_provider(Mode("batched@4", {"CXR_MAX_BATCH_SIZE": "16"}, processes=4), "cuda")
    assert batched == Mode(
        "batched@4", {"CXR_MAX_BATCH_SIZE": "16", "CXR_EXECUTION_PROVIDER": "cuda"}, processes=4
    )
    named = Mode("trt", {"CXR_EXECUTION_PROVIDER": "tensorrt"})
    assert on_provider(named, "cuda") == named


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="this onnxruntime has CUDA"
)
def test_without_the_gpu_provider_it_says_so_before_starting_anything(
    tiny_model_dir: Path, tiny_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--model", str(tiny_model_dir), "--films", str(tiny_dataset), "--provider", "cuda"]
    assert main(argv) == 2
    said = capsys.readouterr().err
    assert "CXR_EXECUTION_PROVIDER=cuda" in said and "install onnxruntime-gpu" in said
    film = film_paths(tiny_dataset, 1, RASTER_SUFFIXES)[0].read_bytes()
    with pytest.raises(ModelLoadError, match="TensorRT"):
        measure_ceiling(tiny_model_dir, [film], (1,), 0.01, "tensorrt")


def test_default_modes_compare_batching_with_none() -> None:
    assert [m.env for m in DEFAULT_MODES] == [{}, {"CXR_MAX_BATCH_SIZE": "1"}]


def test_without_films_it_skips(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--model", str(tiny_model_dir), "--films", str(tmp_path / "absent")]) == 0
    assert "SKIPPED" in capsys.readouterr().err
