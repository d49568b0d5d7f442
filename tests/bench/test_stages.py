"""The stage benchmark runs on the tiny model, and the changed stages still give the same pixels."""

import json
from pathlib import Path

from bench.stages import main


def test_stages_reports_every_stage_for_both_kinds(
    tiny_model_dir: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "stages"
    argv = [
        "--model",
        str(tiny_model_dir),
        "--films",
        str(tiny_dataset),
        "--seconds",
        "0.01",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert set(report["kinds"]) == {"png-224", "dicom-full"}
    for kind in report["kinds"].values():
        assert all(ms > 0 for ms in kind["cpu_ms"].values())
        assert {
            "colour_blend",
            "colour_blend_before",
            "png_encode",
            "png_encode_zlib",
            "png_encode_before",
        } <= set(kind["cpu_ms"])
    assert report["kinds"]["dicom-full"]["overlay"] == [512, 512]
    assert set(report["inference_wall_ms_per_film"]) == {"b1", "b8"}
    assert "command: python -m bench.stages" in out.with_suffix(".txt").read_text()


def test_without_films_it_skips(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert main(["--model", str(tiny_model_dir), "--films", str(tmp_path / "absent")]) == 0
