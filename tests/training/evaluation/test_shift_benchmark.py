"""The shift benchmark (``training.evaluation.shift_benchmark``) with a transparent model: a film's
p(positive) is its mean brightness after the contract, so what each shift does to the score is known."""

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from tests.factories import chest_like, png_bytes
from training.data.scan import Sample
from training.data.shifts import SEVERITIES, SHIFTS
from training.evaluation.shift_benchmark import choose_films, headline, shift_benchmark, summary_rows


def _films(tmp_path: Path) -> list[Sample]:
    samples = []
    for i in range(12):
        label = i % 2
        plane = chest_like(48, 40, seed=i)
        if label:  # positives: a bright opacity in the left lung
            plane[12:36, 6:18] = np.clip(plane[12:36, 6:18] + 0.4, 0, 1)
        path = tmp_path / f"film{i}.png"
        path.write_bytes(png_bytes(plane))
        samples.append(Sample(path, label, "", f"{i:064x}", source="a" if i < 6 else "b"))
    return samples


def _brightness(inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    p = inputs[:, 0, 6:26, 2:12].mean(axis=(1, 2)).astype(np.float64)
    return np.stack([1 - p, p], axis=1)


def test_every_shift_and_severity_is_scored(tmp_path: Path) -> None:
    films = _films(tmp_path)
    benchmark = shift_benchmark(_brightness, films, size=32, positive_index=1, threshold=0.5)
    assert benchmark.films == 12
    assert benchmark.per_source_films == {"a": 6, "b": 6}
    conditions = [(r.shift, r.severity) for r in benchmark.results]
    assert conditions == [("none", 0)] + [(n, s) for n in SHIFTS for s in SEVERITIES[1:]]
    base = benchmark.results[0]
    assert base.auc == pytest.approx(1.0)
    assert set(base.per_source_auc) == {"a", "b"}
    # inverted polarity turns the bright opacity dark: the transparent model ranks every film backwards
    inverted = next(r for r in benchmark.results if r.shift == "invert")
    assert inverted.auc == pytest.approx(0.0)
    assert "unshifted" in summary_rows(benchmark)[2]
    assert "unshifted AUC 1.000" in headline(benchmark)


def test_film_choice_keeps_every_source_and_class(tmp_path: Path) -> None:
    films = _films(tmp_path)
    chosen = choose_films(films, 4, seed=0)
    assert {(s.source, s.label) for s in chosen} == {("a", 0), ("a", 1), ("b", 0), ("b", 1)}
    assert choose_films(films, 100) == films
