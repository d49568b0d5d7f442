"""Publishing and activating store versions on the session's tiny model: measured on the same films,
refused when worse, collapsed or corrupted, and every decision on record."""

import json
from pathlib import Path
from typing import Any

import pytest

from service.contract.model_card import CARD_FILENAME
from service.store.active_version import ACTIVE_FILENAME, read_active, write_active
from tests.service.model_edits import add_version, corrupt, edit_card, swap_class_probabilities
from training.cli import EXIT_REFUSED, EXIT_USAGE, main
from training.release.publish import PUBLISH_LOG, PublishError, activate_version, publish

NAME = "cxr-pneumonia"


@pytest.fixture
def store(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A store holding version 1 of the tiny model and no pointer yet."""
    store = tmp_path / "store"
    add_version(store, tiny_model_dir, "1")
    return store


def _log(store: Path) -> list[dict[str, Any]]:
    lines = (store / NAME / PUBLISH_LOG).read_text().splitlines()
    return [json.loads(line) for line in lines]


def _collapse(model_dir: Path) -> None:
    """An operating point of 0: every film is called positive, whatever the model computes."""
    card = json.loads((model_dir / CARD_FILENAME).read_text())
    card["decision_threshold"]["value"] = 0.0
    (model_dir / CARD_FILENAME).write_text(json.dumps(card))


def test_the_first_version_is_published_on_its_checks(store: Path) -> None:
    decision = publish(store, NAME, "1")
    assert decision.pointer_moved, decision.reason
    assert read_active(store / NAME) == "1"
    assert "no active version yet" in decision.reason
    (record,) = _log(store)
    assert (record["action"], record["candidate"], record["previous"], record["decision"]) == (
        "publish",
        "1",
        None,
        "published",
    )
    assert record["metrics"]["previous"] is None
    candidate, baseline = record["metrics"]["candidate"], record["metrics"]["majority_baseline"]
    assert candidate["auc"] > baseline["auc"] and candidate["distinct_predicted_classes"] == 2
    assert {"sensitivity", "specificity", "accuracy"} <= candidate.keys()
    assert record["films"]["source"].startswith("validation split of run ")
    assert record["films"]["count"] == sum(record["films"]["per_class"].values()) > 0


def test_an_equal_candidate_is_published_and_compared_on_the_same_films(store: Path) -> None:
    write_active(store / NAME, "1")
    add_version(store, store / NAME / "1", "2")
    decision = publish(store, NAME, "2")
    assert decision.pointer_moved, decision.reason
    assert read_active(store / NAME) == "2"
    record = _log(store)[-1]
    assert (record["previous"], record["decision"]) == ("1", "published")
    candidate, previous = record["metrics"]["candidate"], record["metrics"]["previous"]
    assert (candidate["version"], previous["version"]) == ("2", "1")
    assert candidate["auc"] == previous["auc"] and candidate["accuracy"] == previous["accuracy"]
    assert "at least as good" in record["reason"]


def test_a_worse_candidate_is_refused_and_the_pointer_stays(store: Path) -> None:
    write_active(store / NAME, "1")
    swap_class_probabilities(add_version(store, store / NAME / "1", "2"))
    decision = publish(store, NAME, "2")
    assert not decision.pointer_moved
    assert "is worse: AUC" in decision.reason
    assert read_active(store / NAME) == "1"
    candidate, previous = decision.candidate_evaluation, decision.previous_evaluation
    assert candidate is not None and previous is not None
    new_auc, old_auc = candidate.metrics["auc"], previous.metrics["auc"]
    assert new_auc is not None and old_auc is not None and new_auc < old_auc
    # Honestly worse, not collapsed: it is refused for its AUC alone.
    assert candidate.metrics["distinct_predicted_classes"] == 2
    record = _log(store)[-1]
    assert (record["decision"], record["previous"]) == ("refused", "1")
    # ...unless the tolerance says that much loss is acceptable.
    assert publish(store, NAME, "2", tolerance=1.0).pointer_moved


def test_a_candidate_that_calls_one_class_is_refused_even_as_the_first_version(store: Path) -> None:
    _collapse(add_version(store, store / NAME / "1", "2"))
    decision = publish(store, NAME, "2")
    assert not decision.pointer_moved
    assert "collapsed to one class" in decision.reason
    assert not (store / NAME / ACTIVE_FILENAME).exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (corrupt, "sha256"),
        (lambda d: edit_card(d, version="9"), "holds a card for cxr-pneumonia 9, not cxr-pneumonia 2"),
    ],
    ids=["corrupted", "card-says-another-version"],
)
def test_a_candidate_the_service_would_refuse_is_refused(store: Path, edit: Any, message: str) -> None:
    write_active(store / NAME, "1")
    edit(add_version(store, store / NAME / "1", "2"))
    decision = publish(store, NAME, "2")
    assert not decision.pointer_moved
    assert message in decision.reason
    assert read_active(store / NAME) == "1"
    assert _log(store)[-1]["decision"] == "refused"


def test_a_missing_candidate_is_refused(store: Path) -> None:
    decision = publish(store, NAME, "7")
    assert not decision.pointer_moved and "does not exist" in decision.reason


def test_eval_data_replaces_the_recorded_split(store: Path, tiny_dataset: Path) -> None:
    write_active(store / NAME, "1")
    add_version(store, store / NAME / "1", "2")
    decision = publish(store, NAME, "2", eval_data=tiny_dataset)
    assert decision.pointer_moved, decision.reason
    assert decision.films is not None and decision.films.source == f"folder {tiny_dataset.resolve()}"
    assert decision.films.per_class == {"NORMAL": 24, "PNEUMONIA": 24}


def test_eval_data_with_a_class_the_model_lacks_is_refused(store: Path, tmp_path: Path) -> None:
    for name in ("NORMAL", "TUBERCULOSIS"):
        (tmp_path / "eval" / name).mkdir(parents=True)
        (tmp_path / "eval" / name / "a.png").write_bytes(b"not read")
    decision = publish(store, NAME, "1", eval_data=tmp_path / "eval")
    assert not decision.pointer_moved
    assert "['TUBERCULOSIS'] are not classes of the model" in decision.reason


def test_undecodable_evaluation_films_are_counted_not_named(store: Path, tmp_path: Path) -> None:
    for name in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "eval" / name).mkdir(parents=True)
        (tmp_path / "eval" / name / "person1_secret.png").write_bytes(b"not an image")
    decision = publish(store, NAME, "1", eval_data=tmp_path / "eval")
    assert not decision.pointer_moved
    assert "2 of 2 films" in decision.reason and "person1" not in decision.reason
    assert "person1" not in (store / NAME / PUBLISH_LOG).read_text()


def test_activate_rolls_back_and_is_logged(store: Path) -> None:
    add_version(store, store / NAME / "1", "2")
    assert publish(store, NAME, "1").pointer_moved
    assert publish(store, NAME, "2").pointer_moved
    decision = activate_version(store, NAME, "1")
    assert decision.pointer_moved, decision.reason
    assert read_active(store / NAME) == "1"
    record = _log(store)[-1]
    assert (record["action"], record["candidate"], record["previous"], record["decision"]) == (
        "activate",
        "1",
        "2",
        "activated",
    )
    assert [r["candidate"] for r in _log(store)] == ["1", "2", "1"]


def test_activate_refuses_a_corrupted_version(store: Path) -> None:
    write_active(store / NAME, "1")
    corrupt(add_version(store, store / NAME / "1", "2"))
    decision = activate_version(store, NAME, "2")
    assert not decision.pointer_moved and "sha256" in decision.reason
    assert read_active(store / NAME) == "1"


def test_a_garbled_pointer_blocks_publish_until_activate_fixes_it(store: Path) -> None:
    (store / NAME / ACTIVE_FILENAME).write_text("1\n2\n")
    decision = publish(store, NAME, "1")
    assert not decision.pointer_moved and "python -m training activate" in decision.reason
    assert activate_version(store, NAME, "1").pointer_moved
    assert read_active(store / NAME) == "1"


def test_usage_errors_decide_nothing(store: Path, tmp_path: Path) -> None:
    with pytest.raises(PublishError, match="does not exist"):
        publish(tmp_path / "elsewhere", NAME, "1")
    with pytest.raises(PublishError, match="tolerance"):
        publish(store, NAME, "1", tolerance=-0.1)
    assert not (store / NAME / PUBLISH_LOG).exists()


def test_the_cli_reports_both_models_and_exits_non_zero_on_refusal(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--store", str(store), "--name", NAME]
    assert main(["publish", *common, "--version", "1"]) == 0
    swap_class_probabilities(add_version(store, store / NAME / "1", "2"))
    assert main(["publish", *common, "--version", "2"]) == EXIT_REFUSED
    report = capsys.readouterr().err
    for expected in ("candidate 2", "active 1", "majority baseline", "auc", "sensitivity", "specificity"):
        assert expected in report
    assert "REFUSED: cxr-pneumonia 2 (ACTIVE stays 1)" in report
    assert main(["activate", *common, "--version", "2"]) == 0  # a person may still decide otherwise
    assert "ACTIVATED: cxr-pneumonia 2 (ACTIVE -> 2)" in capsys.readouterr().out
    assert read_active(store / NAME) == "2"
    assert main(["publish", "--store", str(store), "--name", "other", "--version", "1"]) == EXIT_USAGE
