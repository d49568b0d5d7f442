"""Moving the store's ACTIVE pointer: ``publish`` (measured against the active version) and
``activate`` (explicit, for roll-back).

``publish`` is the roll-out gate. The candidate must first load exactly as the service would load it
(``service.inference.runtime.verify_model_dir``: card, sha256, no external data, graph contract,
warm-up), with
a card whose name and version match its folder, because replicas report the card's version. Then the
candidate and the active version run through ONNX Runtime on the same films, each prepared by its own
pixel contract and judged at its own card's operating point. The pointer moves only if the
candidate's AUC is at least the active one's minus the tolerance and its calls are not all one class.
With no active version yet there is nothing to compare with: a verified candidate that does not
collapse is published.

``activate`` points at any version that passes the same load checks, without measuring: the
roll-back, or a roll-forward a person decided on.

Every decision, refusals included, is appended as one JSON line to ``publish_log.jsonl`` beside the
versions: what was active before, what was measured on which films, and why. Film names never
appear there (they can identify patients); the films are described by their source and counts.
"""

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from service.contract import DecisionThreshold, ModelCard
from service.contract.model_card import ONNX_FILENAME, binary_threshold
from service.inference.runtime import verify_model_dir
from service.store.active_version import (
    NoPointerError,
    PointerError,
    is_version_name,
    read_active,
    write_active,
)
from service.store.errors import ModelLoadError
from service.store.verify import load_card
from training.evaluation.films import (
    EvaluationFilms,
    EvaluationFilmsError,
    films_from_folder,
    films_from_run,
    recorded_run,
)
from training.export.graph_outputs import run_graph
from training.stats.metrics import (
    MetricValues,
    card_train_labels,
    classification_metrics,
    decision_rule,
    format_metric,
    majority_baseline,
)

log = logging.getLogger(__name__)

PUBLISH_LOG = "publish_log.jsonl"
_LOCK_FILE = ".publish.lock"
_REPORTED_METRICS = ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity")

Action = Literal["publish", "activate"]


class PublishError(ValueError):
    """The request itself is unusable (no such store, a bad tolerance): nothing was decided."""


class VersionRefusedError(RuntimeError):
    """The version may not become active; the message is the reason recorded and shown."""


@dataclass(frozen=True)
class Evaluation:
    """One version measured on the evaluation films at its card's operating point."""

    version: str
    onnx_sha256: str
    threshold: DecisionThreshold | None
    metrics: MetricValues

    def record(self) -> dict[str, Any]:
        threshold = self.threshold
        return {
            "version": self.version,
            "onnx_sha256": self.onnx_sha256,
            "threshold": None
            if threshold is None
            else {"positive_class": threshold.positive_class, "value": threshold.value},
            **self.metrics,
        }


@dataclass
class Decision:
    """What ``publish`` or ``activate`` decided, with everything measured on the way."""

    action: Action
    model: str
    candidate: str
    previous: str | None
    pointer_moved: bool = False
    reason: str = ""
    tolerance: float | None = None
    films: EvaluationFilms | None = None
    candidate_evaluation: Evaluation | None = None
    previous_evaluation: Evaluation | None = None
    baseline: MetricValues | None = None
    time: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def outcome(self) -> str:
        """``published`` / ``activated`` when the pointer moved, else ``refused``."""
        if not self.pointer_moved:
            return "refused"
        return "published" if self.action == "publish" else "activated"

    def record(self) -> dict[str, Any]:
        """The JSON line for ``publish_log.jsonl``."""
        films = self.films
        return {
            "time": self.time.isoformat(timespec="seconds"),
            "action": self.action,
            "model": self.model,
            "candidate": self.candidate,
            "previous": self.previous,
            "decision": self.outcome,
            "reason": self.reason,
            "tolerance": self.tolerance,
            "films": None
            if films is None
            else {"source": films.source, "count": len(films.paths), "per_class": films.per_class},
            "metrics": {
                "candidate": _record(self.candidate_evaluation),
                "previous": _record(self.previous_evaluation),
                "majority_baseline": self.baseline,
            },
        }


def publish(
    store: Path,
    name: str,
    version: str,
    *,
    eval_data: Path | None = None,
    run_dir: Path | None = None,
    tolerance: float = 0.0,
) -> Decision:
    """Measure ``version`` against the active one and make it active if it is at least as good.

    Films: ``eval_data`` (``<root>/<CLASS>/*``) if given, else the validation split of ``run_dir``,
    else of the run the candidate was exported from. The decision is logged and returned; the pointer
    has moved iff ``decision.pointer_moved``.
    """
    if not 0.0 <= tolerance <= 1.0:
        raise PublishError(f"tolerance {tolerance} is not an AUC difference between 0 and 1")
    name_dir = _name_dir(store, name)
    with _store_lock(name_dir):
        decision = Decision("publish", name, version, previous=None, tolerance=tolerance)
        try:
            decision.previous = _active_or_none(name_dir)
            candidate = verify_version(name_dir, name, version)
            _measure(decision, name_dir, candidate, eval_data, run_dir)
            decision.reason = _verdict(decision)
        except (VersionRefusedError, EvaluationFilmsError) as exc:
            decision.reason = str(exc)
        else:
            write_active(name_dir, version)
            decision.pointer_moved = True
        _append_log(name_dir, decision)
    return decision


def activate_version(store: Path, name: str, version: str) -> Decision:
    """Make ``version`` active after the service's load checks alone (roll-back); logged like publish."""
    name_dir = _name_dir(store, name)
    with _store_lock(name_dir):
        decision = Decision("activate", name, version, previous=None)
        try:
            decision.previous = read_active(name_dir)
        except NoPointerError:
            pass
        except PointerError as exc:
            log.warning("replacing an unusable pointer: %s", exc)  # activate is how it gets fixed
        try:
            verify_version(name_dir, name, version)
        except VersionRefusedError as exc:
            decision.reason = str(exc)
        else:
            write_active(name_dir, version)
            decision.pointer_moved = True
            decision.reason = "activated explicitly after the service's load checks (not measured)"
        _append_log(name_dir, decision)
    return decision


def verify_version(name_dir: Path, name: str, version: str) -> ModelCard:
    """The version's card, if the service would load the folder; ``VersionRefusedError`` otherwise."""
    if not is_version_name(version):
        raise VersionRefusedError(f"{version!r} is not a version folder name")
    model_dir = name_dir / version
    try:
        card = verify_model_dir(model_dir)
    except ModelLoadError as exc:
        raise VersionRefusedError(f"version {version} fails the service's checks: {exc}") from None
    if card.name != name or card.version != version:
        # Replicas report the card's version: a mismatch would make a roll-out impossible to follow.
        raise VersionRefusedError(
            f"{model_dir} holds a card for {card.name} {card.version}, not {name} {version}"
        )
    return card


def format_decision(decision: Decision) -> str:
    """The comparison table and the verdict, for the terminal."""
    lines = []
    if decision.films is not None:
        counts = ", ".join(f"{k} {v}" for k, v in decision.films.per_class.items())
        lines.append(f"films: {decision.films.source} ({len(decision.films.paths)}: {counts})")
    evaluations = [e for e in (decision.candidate_evaluation, decision.previous_evaluation) if e]
    if evaluations:
        titles = [f"candidate {decision.candidate}"]
        if decision.previous_evaluation is not None:
            titles.append(f"active {decision.previous}")
        lines.append(f"{'metric':<20}" + "".join(f"{t:>22}" for t in titles) + f"{'majority baseline':>20}")
        baseline = decision.baseline or {}
        for key in _REPORTED_METRICS:
            values = "".join(f"{format_metric(e.metrics.get(key)):>22}" for e in evaluations)
            lines.append(f"{key:<20}{values}{format_metric(baseline.get(key)):>20}")
        lines.append(
            f"{'threshold':<20}" + "".join(f"{_threshold_text(e.threshold):>22}" for e in evaluations)
        )
    verdict = decision.outcome.upper()
    target = "ACTIVE ->" if decision.pointer_moved else "ACTIVE stays"
    lines.append(
        f"{verdict}: {decision.model} {decision.candidate} ({target} {_active_after(decision)}): "
        f"{decision.reason}"
    )
    return "\n".join(lines)


def _name_dir(store: Path, name: str) -> Path:
    name_dir = store / name
    if not name_dir.is_dir():
        raise PublishError(f"{name_dir} does not exist (--store {store}, --name {name})")
    return name_dir


@contextmanager
def _store_lock(name_dir: Path) -> Iterator[None]:
    """One publish/activate at a time per model: each reads the pointer, decides, then writes it."""
    with (name_dir / _LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _active_or_none(name_dir: Path) -> str | None:
    try:
        return read_active(name_dir)
    except NoPointerError:
        return None
    except PointerError as exc:
        raise VersionRefusedError(
            f"{exc}; publishing compares with the active version, so fix the pointer first with "
            "python -m training activate"
        ) from None


def _measure(
    decision: Decision, name_dir: Path, candidate: ModelCard, eval_data: Path | None, run_dir: Path | None
) -> None:
    """Evaluate the candidate and the active version (if any) on the same films, into ``decision``."""
    candidate_dir = name_dir / candidate.version
    if eval_data is not None:
        films = films_from_folder(eval_data, candidate.class_names)
    else:
        films = films_from_run(run_dir or recorded_run(candidate_dir, candidate), candidate.class_names)
    decision.films = films
    decision.candidate_evaluation = _evaluate(candidate_dir, candidate, films)
    decision.baseline = _majority_baseline(candidate, films)
    if decision.previous is None:
        return
    previous_dir = name_dir / decision.previous
    try:
        previous = load_card(previous_dir)
    except ModelLoadError as exc:
        raise VersionRefusedError(
            f"the active version {decision.previous} cannot be evaluated ({exc}); compare by hand and "
            "use activate"
        ) from None
    if previous.class_names != candidate.class_names:
        raise VersionRefusedError(
            f"the active version {decision.previous} has classes {previous.class_names}, the candidate "
            f"{candidate.class_names}: they cannot be compared; use activate if this is intended"
        )
    films.inputs(previous.pixel_contract.height, previous.pixel_contract.width)  # may refuse the films
    try:
        decision.previous_evaluation = _evaluate(previous_dir, previous, films)
    except Exception as exc:  # a missing file, or ORT's own failure types on a graph it cannot run
        raise VersionRefusedError(
            f"the active version {decision.previous} cannot be run ({type(exc).__name__}: {exc}); "
            "compare by hand and use activate"
        ) from None


def _evaluate(model_dir: Path, card: ModelCard, films: EvaluationFilms) -> Evaluation:
    contract = card.pixel_contract
    inputs = films.inputs(contract.height, contract.width)
    probabilities = run_graph(model_dir / ONNX_FILENAME, card, inputs).probabilities.astype(np.float64)
    threshold = binary_threshold(card)
    metrics = classification_metrics(films.labels, probabilities, *decision_rule(threshold, card.class_names))
    return Evaluation(card.version, card.onnx_sha256, threshold, metrics)


def _majority_baseline(card: ModelCard, films: EvaluationFilms) -> MetricValues:
    """Always calling the candidate's most frequent training class, scored on the same films."""
    names = card.class_names
    prior_labels = card_train_labels(card)
    if prior_labels is None:  # an older card: the films' own class counts stand in
        counts = list(films.per_class.values())
        prior_labels = np.repeat(np.arange(len(names), dtype=np.int64), counts)
    positive, _ = decision_rule(binary_threshold(card), names)
    return majority_baseline(prior_labels, films.labels, len(names), positive)


def _verdict(decision: Decision) -> str:
    """The reason to publish; raises ``VersionRefusedError`` with the reason not to."""
    candidate, previous = decision.candidate_evaluation, decision.previous_evaluation
    assert candidate is not None and decision.films is not None
    films = len(decision.films.paths)
    if (candidate.metrics["distinct_predicted_classes"] or 0) < 2:
        raise VersionRefusedError(
            f"candidate {candidate.version} calls all {films} films the same class at its operating point "
            f"({_threshold_text(candidate.threshold)}): it has collapsed to one class"
        )
    if previous is None:
        return f"no active version yet; candidate {candidate.version} passes the service's checks"
    new_auc, old_auc = candidate.metrics["auc"], previous.metrics["auc"]
    if new_auc is None or old_auc is None:
        raise VersionRefusedError("AUC is undefined on these films, so the versions cannot be compared")
    tolerance = decision.tolerance or 0.0
    comparison = f"AUC {new_auc:.4f} vs active {previous.version} {old_auc:.4f}, tolerance {tolerance:.4f}"
    if new_auc < old_auc - tolerance:
        raise VersionRefusedError(f"candidate {candidate.version} is worse: {comparison}, on {films} films")
    return f"candidate {candidate.version} is at least as good: {comparison}, on {films} films"


def _append_log(name_dir: Path, decision: Decision) -> None:
    line = json.dumps(decision.record(), allow_nan=False, sort_keys=False)
    with (name_dir / PUBLISH_LOG).open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())  # the record of a pointer move must survive as long as the move


def _record(evaluation: Evaluation | None) -> dict[str, Any] | None:
    return None if evaluation is None else evaluation.record()


def _threshold_text(threshold: DecisionThreshold | None) -> str:
    return "argmax" if threshold is None else f"p({threshold.positive_class})>={threshold.value:.3f}"


def _active_after(decision: Decision) -> str:
    return decision.candidate if decision.pointer_moved else (decision.previous or "(none)")
