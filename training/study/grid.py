"""``python -m training grid <grid.yaml>``: a study as a grid of training runs, resumable, with one
comparison table (Markdown + CSV) and plots, the majority-class baseline beside every model, and
collapsed models flagged and never ranked.

The YAML::

    name: pneumonia-backbones
    base: {data_dir: ../shared/data/kermany224/train, image_size: 128, ...}   # TrainConfig fields
    axes:                                    # the cartesian product, first axis outermost
      model:                                 # each value sets several fields; label names it
        - {label: lite0, backbone: efficientnet_lite0, weights: imagenet}
        - {label: resnet50, backbone: resnet50, weights: none}
      augment.enabled: [true, false]         # a field axis: dotted path into TrainConfig
    rank_by: auc                             # a metric of the reporting split (default auc)

Paths in ``base`` are relative to the YAML's folder. Every cell is a normal run folder under
``<out>/runs/<cell>``; a cell with a ``result.json`` is done and skipped on the next invocation, a
cell without one (interrupted) is started again from scratch.
"""

import itertools
import json
import logging
import shutil
import time
import traceback
from pathlib import Path
from typing import Any, Literal

from training.config import TrainConfig
from training.study.report import write_grid_report
from training.study.spec import CellResult, GridSpec, load_spec

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
GRID_FILE = "grid.yaml"


def _set_dotted(values: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        values = values.setdefault(part, {})
    values[leaf] = value


def _label(value: Any) -> str:
    if isinstance(value, dict):
        if "label" in value:
            return str(value["label"])
        return "-".join(_label(v) for v in value.values())
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value).replace("/", "_").replace(" ", "")


def cells(spec: GridSpec) -> list[tuple[str, dict[str, Any], TrainConfig]]:
    """(cell name, the axis settings, the full config) for every point of the grid, in order."""
    names = list(spec.axes)
    out = []
    for combination in itertools.product(*(spec.axes[name] for name in names)):
        values: dict[str, Any] = json.loads(json.dumps(spec.base))  # deep copy
        settings: dict[str, Any] = {}
        for axis, value in zip(names, combination, strict=True):
            if isinstance(value, dict):  # a labelled axis sets several (possibly dotted) fields
                for field, field_value in value.items():
                    if field == "label":
                        continue
                    _set_dotted(values, field, field_value)
                    settings[field] = field_value
            else:
                _set_dotted(values, axis, value)
                settings[axis] = value
        cell = "_".join(f"{_label(v)}" for v in combination)
        values["run_name"] = cell
        out.append((cell, settings, TrainConfig.model_validate(values)))
    seen = [c for c, _, _ in out]
    if len(set(seen)) != len(seen):
        raise ValueError("two grid cells get the same name; make the axis values distinct")
    return out


def run_grid(
    spec_path: Path, out_dir: Path | None = None, fresh: bool = False, rescore: bool = False
) -> list[CellResult]:
    """Run every cell not yet done, then (re)write the comparison report from all results.

    ``rescore``: evaluate finished cells' checkpoints again (after a change to the evaluation code)
    without retraining them; their training times and status are kept.
    """
    from training.data.training_data import DATA_FIELDS, TrainingData, load_data

    spec = load_spec(spec_path)
    out_dir = out_dir or spec_path.parent
    runs = out_dir / "runs"
    if fresh and runs.exists():
        shutil.rmtree(runs)
    runs.mkdir(parents=True, exist_ok=True)
    if spec_path.resolve() != (out_dir / GRID_FILE).resolve():
        shutil.copy2(spec_path, out_dir / GRID_FILE)
    planned = cells(spec)
    log.info("grid %s: %d cells", spec.name, len(planned))
    cached: tuple[tuple[Any, ...], TrainingData] | None = None
    for index, (cell, settings, planned_config) in enumerate(planned, 1):
        config = planned_config.model_copy(update={"output_dir": runs})
        done = (runs / cell / RESULT_FILE).exists()
        if done and not rescore:
            log.info("[%d/%d] %s: done already", index, len(planned), cell)
            continue
        if (runs / cell).exists() and not done:
            log.info("[%d/%d] %s: interrupted before, starting again", index, len(planned), cell)
            shutil.rmtree(runs / cell)
        key = tuple(str(getattr(config, field)) for field in DATA_FIELDS)
        if cached is None or cached[0] != key:
            cached = None  # free the previous films before loading the next
            cached = (key, load_data(config))
        if done:
            log.info("[%d/%d] %s: scoring again", index, len(planned), cell)
            result = _rescore(runs / cell, cached[1])
        else:
            log.info("[%d/%d] %s", index, len(planned), cell)
            result = _run_cell(cell, settings, config, cached[1])
        (runs / cell).mkdir(exist_ok=True)  # a cell that failed before its run folder existed
        (runs / cell / RESULT_FILE).write_text(result.model_dump_json(indent=2))
    results = [
        CellResult.model_validate_json((runs / cell / RESULT_FILE).read_text()) for cell, _, _ in planned
    ]
    write_grid_report(spec, results, out_dir, _relative(spec_path))
    return results


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _rescore(cell_dir: Path, data: Any) -> CellResult:
    from training.study.scoring import score_cell

    previous = CellResult.model_validate_json((cell_dir / RESULT_FILE).read_text())
    if previous.status == "failed":
        return previous
    return previous.model_copy(update=score_cell(cell_dir, data))


def _run_cell(cell: str, settings: dict[str, Any], config: TrainConfig, data: Any) -> CellResult:
    from training.fit.engine import train
    from training.stats.metrics import CollapsedModelError
    from training.study.scoring import score_cell

    started = time.perf_counter()
    status: Literal["ok", "collapsed", "failed"] = "ok"
    message = None
    try:
        train(config, data)
    except CollapsedModelError as exc:
        status, message = "collapsed", str(exc)
    except Exception as exc:  # one broken cell must not lose the rest of a long study
        log.error("cell %s failed:\n%s", cell, traceback.format_exc())
        return CellResult(
            cell=cell,
            settings=settings,
            status="failed",
            message=f"{type(exc).__name__}: {exc}",
            backbone=config.backbone,
            wall_seconds=time.perf_counter() - started,
        )
    scored = score_cell(config.output_dir / cell, data)
    return CellResult(
        cell=cell,
        settings=settings,
        status=status,
        message=message,
        backbone=config.backbone,
        wall_seconds=time.perf_counter() - started,
        **scored,
    )
