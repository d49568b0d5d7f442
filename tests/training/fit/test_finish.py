"""``python -m training finish``: a run stopped before its summary is concluded from its checkpoint,
with the same calibration, operating point and metrics the run would have written itself."""

import shutil
from pathlib import Path

import pytest

from training.fit import run_folder
from training.fit.engine import finish


def test_finish_concludes_a_stopped_run_as_the_run_itself_did(tiny_run_dir: Path, tmp_path: Path) -> None:
    stopped = tmp_path / "stopped"
    shutil.copytree(tiny_run_dir, stopped)
    (stopped / run_folder.SUMMARY).unlink()
    original = run_folder.read_summary(tiny_run_dir)
    concluded = finish(stopped).summary
    assert run_folder.read_summary(stopped) == concluded
    assert concluded.best_epoch == original.best_epoch
    assert concluded.epochs_run == original.epochs_run
    assert concluded.decision_threshold is not None and original.decision_threshold is not None
    assert concluded.decision_threshold.value == pytest.approx(original.decision_threshold.value, abs=1e-6)
    assert concluded.validation_metrics == pytest.approx(original.validation_metrics)


def test_finish_refuses_a_run_without_a_finished_epoch(tiny_run_dir: Path, tmp_path: Path) -> None:
    stopped = tmp_path / "early"
    stopped.mkdir()
    for name in (run_folder.CONFIG_FILE, run_folder.SPLIT_FILE):
        shutil.copy2(tiny_run_dir / name, stopped / name)
    with pytest.raises(FileNotFoundError, match="no finished epoch"):
        finish(stopped)
