"""A real (tiny) study grid: cells trained, scored, ranked, a collapsed cell flagged and not ranked,
and an interrupted grid resumed without redoing finished cells."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import TINY_SIZE
from tests.factories import png_bytes
from training.cli import main
from training.study.grid import RESULT_FILE, cells, run_grid
from training.study.spec import CellResult, load_spec


def _flat_dataset(root: Path) -> Path:
    """Distinct files with identical model inputs: every model collapses on it."""
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        (root / name).mkdir(parents=True)
        for i in range(12):
            plane = np.full((TINY_SIZE, TINY_SIZE), (label * 12 + i + 1) / 30)
            (root / name / f"person{label * 100 + i}_f.png").write_bytes(png_bytes(plane))
    return root


def _spec(tmp_path: Path, tiny_dataset: Path) -> Path:
    flat = _flat_dataset(tmp_path / "flat")
    spec = {
        "name": "tiny-study",
        "description": "two data sets x two backbones x augmentation",
        "base": {
            "weights": "none",
            "image_size": TINY_SIZE,
            "patient_pattern": r"(?P<patient>person\d+)",
            "batch_size": 8,
            "head_epochs": 0,
            "finetune_epochs": 3,
            "finetune_lr": 0.003,
            "threads": 2,
        },
        "axes": {
            "data": [
                {"label": "tiny", "data_dir": str(tiny_dataset)},
                {"label": "flat", "data_dir": str(flat)},
            ],
            "backbone": ["baseline_cnn", "mlp"],
            "augment.enabled": [True, False],
        },
    }
    path = tmp_path / "study" / "grid.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_cells_are_the_cartesian_product_with_labelled_and_dotted_axes(
    tmp_path: Path, tiny_dataset: Path
) -> None:
    planned = cells(load_spec(_spec(tmp_path, tiny_dataset)))
    assert [name for name, _, _ in planned][:3] == [
        "tiny_baseline_cnn_on",
        "tiny_baseline_cnn_off",
        "tiny_mlp_on",
    ]
    assert len(planned) == 8
    _, settings, config = planned[1]
    assert settings == {"data_dir": str(tiny_dataset), "backbone": "baseline_cnn", "augment.enabled": False}
    assert not config.augment.enabled and config.run_name == "tiny_baseline_cnn_off"


def test_grid_ranks_real_models_flags_collapse_and_resumes(tmp_path: Path, tiny_dataset: Path) -> None:
    spec_path = _spec(tmp_path, tiny_dataset)
    out = spec_path.parent
    assert main(["grid", str(spec_path)]) == 0

    with (out / "results.csv").open() as handle:
        rows = {row["cell"]: row for row in csv.DictReader(handle)}
    assert len(rows) == 8
    for cell, row in rows.items():
        if cell.startswith("flat"):
            assert row["status"] == "collapsed" and row["rank"] == "", cell
        else:
            assert row["status"] == "ok" and row["rank"] != "", cell
            assert float(row["auc"]) > float(row["majority_auc"])
    assert sorted(int(rows[c]["rank"]) for c in rows if c.startswith("tiny")) == [1, 2, 3, 4]
    ranked_aucs = [float(r["auc"]) for r in sorted(rows.values(), key=lambda r: int(r["rank"] or 99))][:4]
    assert ranked_aucs == sorted(ranked_aucs, reverse=True)
    markdown = (out / "results.md").read_text()
    assert "majority-class baseline" in markdown
    assert "COLLAPSED: not ranked" in markdown
    ranked_table = markdown.split("## COLLAPSED")[0]
    assert "flat_" not in ranked_table  # a collapsed cell never appears among the ranked
    for name in ("comparison.png", "score_vs_training_time.png"):
        assert (out / name).stat().st_size > 1000
    assert (out / "runs" / "tiny_mlp_on" / "evaluation" / "report.md").is_file()

    # Interrupt: one finished cell loses its result, another is a half-written run folder.
    done = {c: (out / "runs" / c / RESULT_FILE).stat().st_mtime_ns for c in rows}
    (out / "runs" / "tiny_mlp_off" / RESULT_FILE).unlink()
    shutil.rmtree(out / "runs" / "flat_mlp_off")
    (out / "runs" / "flat_mlp_off").mkdir()
    results = run_grid(spec_path)
    assert len(results) == 8
    for cell, before in done.items():
        after = (out / "runs" / cell / RESULT_FILE).stat().st_mtime_ns
        assert (after == before) == (cell not in ("tiny_mlp_off", "flat_mlp_off")), cell

    # Rescore: the evaluation runs again on the kept checkpoints; status and wall time stay.
    path = out / "runs" / "tiny_mlp_on" / RESULT_FILE
    kept = CellResult.model_validate_json(path.read_text())
    path.write_text(kept.model_copy(update={"metrics": {**kept.metrics, "auc": 0.123}}).model_dump_json())
    rescored = {r.cell: r for r in run_grid(spec_path, rescore=True)}
    assert rescored["tiny_mlp_on"].metrics["auc"] == kept.metrics["auc"]
    assert rescored["tiny_mlp_on"].wall_seconds == kept.wall_seconds
    assert rescored["flat_mlp_on"].status == "collapsed"


def test_a_failing_cell_is_reported_not_fatal(tmp_path: Path, tiny_dataset: Path) -> None:
    spec_path = _spec(tmp_path, tiny_dataset)
    spec = yaml.safe_load(spec_path.read_text())
    spec["axes"] = {"weights": ["none", str(tmp_path / "missing-weights.pt")]}
    spec["base"] |= {"data_dir": str(tiny_dataset), "backbone": "baseline_cnn", "finetune_epochs": 1}
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    results = run_grid(spec_path)
    assert [r.status for r in results] == ["ok", "failed"]
    assert "missing-weights.pt" in (results[1].message or "")
    assert "## Failed" in (spec_path.parent / "results.md").read_text()


def test_unknown_grid_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "base": {}, "axes": {"seed": [0]}, "typo": 1}))
    with pytest.raises(ValueError, match="typo"):
        load_spec(path)
