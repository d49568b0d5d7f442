"""bench.precision on real ONNX Runtime sessions: a version compared with itself agrees exactly, and
every figure the release records is there."""

from pathlib import Path

from bench.precision import compare
from service.store.verify import load_card
from training.evaluation.films import films_from_run


def test_a_version_compared_with_itself_agrees_exactly(tiny_model_dir: Path, tiny_run_dir: Path) -> None:
    films = films_from_run(tiny_run_dir, load_card(tiny_model_dir).class_names)
    report = compare(tiny_model_dir, tiny_model_dir, films, limit=6)
    assert report["films"]["count"] == min(6, len(films.paths))
    assert report["agreement"]["decisions_alike"] == 1.0
    assert report["agreement"]["max_probability_difference"] == 0.0
    assert abs(report["agreement"]["cam_correlation"] - 1.0) < 1e-6
    fp32, int8 = report["versions"]["fp32"], report["versions"]["int8"]
    assert fp32["model_bytes"] == int8["model_bytes"] == (tiny_model_dir / "model.onnx").stat().st_size
    for figures in (fp32, int8):
        assert figures["load_s_median"] > 0 and figures["batch1_median_ms"] > 0
        assert figures["batch1_p90_ms"] >= figures["batch1_median_ms"]
        assert 0.0 <= figures["accuracy_at_operating_point"] <= 1.0
