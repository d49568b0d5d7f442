"""scripts/serve_study.py against a real model: synthetic films built in code, trained with a test
split and exported (OOD gate fitted on its own films) by the training package, then served by
``python -m service`` on loopback and posted to over HTTP, as for each study's served.json."""

import json
from pathlib import Path

import pytest

from scripts.serve_study import drawn_test_films, main, other_images
from tests.conftest import tiny_train_config, write_tiny_dataset
from training.fit.run_folder import read_split
from training.ood.film_set import blank_images, noise_images

PER_CLASS = 2


@pytest.fixture(scope="module")
def study_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.fit.engine import train

    config = tiny_train_config(
        write_tiny_dataset(tmp_path_factory.mktemp("study-data")),
        tmp_path_factory.mktemp("runs"),
        "study",
        val_fraction=0.25,
        test_fraction=0.25,
    )
    return train(config).run_dir


@pytest.fixture(scope="module")
def study_model(study_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.export.exporter import export_run

    # No annotated copies in the gate's fit: with a few synthetic validation films they would be most of it.
    return export_run(study_run, tmp_path_factory.mktemp("store"), "study", "1", annotated_share=0.0)


@pytest.fixture(scope="module")
def other_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another 'study': noise and blank images, nothing like the model's films."""
    root = tmp_path_factory.mktemp("other-study")
    for case in [*noise_images(1), *blank_images()]:
        folder = root / case.category.replace(" ", "-")
        folder.mkdir(exist_ok=True)
        (folder / f"{case.name}.png").write_bytes(case.png)
    return root


def test_films_are_drawn_from_the_test_split_per_class_and_seeded(study_run: Path) -> None:
    test_paths = {row.path for row in read_split(study_run) if row.split == "test"}
    films = drawn_test_films(study_run, PER_CLASS, seed=0)
    assert len(films) == 2 * PER_CLASS
    assert {film.path for film in films} <= test_paths
    assert sorted(film.label for film in films) == ["NORMAL"] * PER_CLASS + ["PNEUMONIA"] * PER_CLASS
    assert drawn_test_films(study_run, PER_CLASS, seed=0) == films
    with pytest.raises(ValueError, match="fewer than"):
        drawn_test_films(study_run, len(test_paths) + 1)


def test_other_images_are_a_seeded_draw_of_the_folder(other_study: Path) -> None:
    drawn = other_images(other_study, 3, seed=0)
    assert len(drawn) == 3 == len({film.path for film in drawn})
    assert drawn == other_images(other_study, 3, seed=0)


def test_served_json_records_the_answers_as_served_and_the_other_study_refused(
    study_model: Path, study_run: Path, other_study: Path, tmp_path: Path
) -> None:
    out = tmp_path / "served" / "served.json"
    argv = ["--model", str(study_model), "--run", str(study_run), "--other", str(other_study)]
    assert main([*argv, "--per-class", str(PER_CLASS), "--other-count", "4", "--out", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    summary = report["summary"]
    assert summary["model"] == "study/1"
    assert summary["own_test_films_posted"] == 2 * PER_CLASS == len(report["films"])
    assert summary["served"] + summary["own_test_films_refused_as_ood_or_error"] == 2 * PER_CLASS
    assert summary["served"] >= 1
    served = [film for film in report["films"] if "predicted" in film]
    assert summary["correct"] == sum(film["predicted"] == film["true"] for film in served)
    # A binary model is served at its card's operating point, and the Grad-CAM is of what it said.
    threshold = summary["decision_threshold"]
    assert threshold is not None
    for film in served:
        p_positive = film["probabilities"][threshold["positive_class"]]
        expected = threshold["positive_class"] if p_positive >= threshold["value"] else None
        assert (film["predicted"] == threshold["positive_class"]) == (expected is not None), film
        assert film["triage"]["level"] == ("urgent" if expected else "routine")
        assert film["ood_score"] <= film["ood_threshold"]
    assert summary["gradcam_is_of_predicted_class"] == len(served)
    assert summary[f"other_study_films_posted ({other_study.name})"] == 4 == len(report["other_study_films"])
    assert summary["other_study_films_answers"] == {"422 out_of_distribution": 4}
