"""``python -m training cross-source <study.yaml>``: recipes judged across sources, not in-source.

Each cell trains one recipe on some of the study's sources, then is scored on the validation films
of *every* source (a source it never saw is the stand-in for another hospital) at its own operating
point, and under the acquisition-shift benchmark. The panel is the validation split of all sources
together, and a cell trained on a subset splits the same way (splits are drawn per source), so no
cell ever scores a film it trained on.

The YAML::

    name: generalisation
    base: {image_size: 128, head_epochs: 1, finetune_epochs: 2, ...}     # TrainConfig fields
    sources: [{name: kermany, data_dir: ..., max_films: 1500, ...}, ...]  # SourceConfig fields
    recipes: {current: {}, robust: {augment: {acquisition: 0.8}, label_smoothing: 0.1}}
    train_on: [[kermany], [covid], [kermany, covid]]
    shift_films: 160

Cells are resumable: a cell folder with ``result.json`` is not trained again.
"""

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from service.contract import ShiftBenchmark, SourceMetrics
from training.config import SourceConfig, TrainConfig
from training.data.dataset import FilmDataset
from training.data.scan import Sample
from training.data.sources import prepare_split
from training.evaluation.shift_benchmark import choose_films, headline, shift_benchmark
from training.fit.checkpoint import load_trained_model
from training.fit.engine import train
from training.fit.trainer import predict_probabilities
from training.stats.metrics import CollapsedModelError, per_source_metrics

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"


class StudySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    base: dict[str, Any]
    sources: list[SourceConfig] = Field(min_length=2)
    recipes: dict[str, dict[str, Any]] = Field(min_length=1)
    train_on: list[list[str]] = Field(min_length=1)
    shift_films: int = Field(160, ge=0)


class CellOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cell: str
    recipe: str
    train_on: list[str]
    threshold: float
    panel: dict[str, SourceMetrics]
    shift: ShiftBenchmark | None
    shift_headline: str | None
    train_seconds: float
    collapsed: bool = False
    wall_seconds: float


def load_study(path: Path) -> StudySpec:
    values = yaml.safe_load(path.read_text())
    for source in values.get("sources", []):
        data_dir = Path(source["data_dir"])
        source["data_dir"] = str(data_dir if data_dir.is_absolute() else (path.parent / data_dir).resolve())
    return StudySpec.model_validate(values)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(base))
    for key, value in extra.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def cell_config(spec: StudySpec, recipe: str, train_on: list[str], runs: Path) -> TrainConfig:
    sources = [s.model_dump(mode="json") for s in spec.sources if s.name in train_on]
    if len(sources) != len(train_on):
        raise ValueError(f"train_on {train_on} names a source the study does not have")
    values = _merge(spec.base, spec.recipes[recipe])
    values |= {"sources": sources, "output_dir": str(runs), "run_name": cell_name(recipe, train_on)}
    return TrainConfig.model_validate(values)


def cell_name(recipe: str, train_on: list[str]) -> str:
    return f"{recipe}__{'+'.join(train_on)}"


def run_study(spec_path: Path, out_dir: Path | None = None) -> list[CellOutcome]:
    spec = load_study(spec_path)
    out = out_dir or spec_path.parent
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    panel_config = TrainConfig.model_validate(
        _merge(spec.base, {"sources": [s.model_dump(mode="json") for s in spec.sources]})
    )
    films = prepare_split(panel_config).split.validation
    size = panel_config.image_size
    panel = Panel(films, FilmDataset(films, size, size), choose_films(films, spec.shift_films, seed=1))
    outcomes = []
    for recipe in spec.recipes:
        for train_on in spec.train_on:
            outcomes.append(_cell(spec, recipe, train_on, runs, panel))
            write_results(spec, outcomes, out)
    return outcomes


@dataclass(frozen=True)
class Panel:
    """Every source's validation films: what each cell is scored on."""

    samples: list[Sample]
    films: FilmDataset
    shift_samples: list[Sample]


def _cell(spec: StudySpec, recipe: str, train_on: list[str], runs: Path, panel: Panel) -> CellOutcome:
    name = cell_name(recipe, train_on)
    result_path = runs / name / RESULT_FILE
    if result_path.is_file():
        return CellOutcome.model_validate_json(result_path.read_text())
    if (runs / name).exists():  # interrupted: start the cell again
        import shutil

        shutil.rmtree(runs / name)
    started = time.perf_counter()
    config = cell_config(spec, recipe, train_on, runs)
    collapsed = False
    try:
        run_dir = train(config).run_dir
    except CollapsedModelError as exc:  # the run folder is written first: score it, flagged
        log.warning("%s: %s", name, exc)
        collapsed, run_dir = True, runs / name
    model, _, summary = load_trained_model(run_dir)
    threshold = summary.decision_threshold
    assert threshold is not None, "a study cell needs a binary model with an operating point"
    positive = summary.class_names.index(threshold.positive_class)
    probabilities = predict_probabilities(model, panel.films.inputs, temperature=summary.temperature)
    labels = panel.films.labels.numpy()
    metrics = per_source_metrics(
        labels, probabilities, [s.source for s in panel.samples], positive, threshold.value
    )
    benchmark = None
    if panel.shift_samples and spec.shift_films:
        benchmark = shift_benchmark(
            lambda x: predict_probabilities(model, _tensor(x), temperature=summary.temperature),
            panel.shift_samples,
            size=config.image_size,
            positive_index=positive,
            threshold=threshold.value,
        )
    outcome = CellOutcome(
        cell=name,
        recipe=recipe,
        train_on=train_on,
        threshold=threshold.value,
        panel=metrics,
        shift=benchmark,
        shift_headline=headline(benchmark) if benchmark else None,
        train_seconds=summary.train_seconds,
        collapsed=collapsed,
        wall_seconds=time.perf_counter() - started,
    )
    result_path.write_text(outcome.model_dump_json(indent=2))
    return outcome


def _tensor(x: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(x)


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def write_results(spec: StudySpec, outcomes: list[CellOutcome], out: Path) -> None:
    """``results.md`` (cross-source table, shift summary) and ``results.json``."""
    sources = [s.name for s in spec.sources]
    lines = [
        f"# {spec.name}: cross-source and shift figures",
        "",
        spec.description,
        "",
        "Each cell is scored on the validation films of every source at its own operating point "
        "(target sensitivity on its training sources' validation films). AUC / sensitivity / specificity.",
        "",
        "| recipe | trained on | "
        + " | ".join(f"{s}" for s in sources)
        + " | shift: mean / worst AUC | train s |",
        "|---|---|" + "---|" * len(sources) + "---|---|",
    ]
    for o in outcomes:
        cells = []
        for s in sources:
            m = o.panel.get(s)
            seen = "" if s in o.train_on else " (unseen)"
            cells.append(
                "-" if m is None else f"{_f(m.auc)} / {_f(m.sensitivity)} / {_f(m.specificity)}{seen}"
            )
        shift = "-"
        if o.shift is not None:
            aucs = [r.auc for r in o.shift.results if r.severity > 0 and r.auc is not None]
            shift = f"{np.mean(aucs):.3f} / {min(aucs):.3f}"
        flag = " (COLLAPSED)" if o.collapsed else ""
        lines.append(
            f"| {o.recipe}{flag} | {'+'.join(o.train_on)} | "
            + " | ".join(cells)
            + f" | {shift} | {o.train_seconds:.0f} |"
        )
    lines += ["", "Shift headlines:", ""]
    lines += [f"- {o.cell}: {o.shift_headline}" for o in outcomes if o.shift_headline]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps([o.model_dump(mode="json") for o in outcomes], indent=2))
