"""What a study is (``GridSpec``, read from its YAML) and what one of its cells produced (``CellResult``).

Shared by the grid runner and its report, so that neither imports the other.
"""

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field


class GridSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    base: dict[str, Any]
    axes: dict[str, list[Any]] = Field(min_length=1)
    rank_by: str = "auc"


class CellResult(BaseModel):
    """One cell's outcome: what it was, how it scored against the baseline, what it cost."""

    model_config = ConfigDict(extra="forbid")

    cell: str
    settings: dict[str, Any]
    status: Literal["ok", "collapsed", "failed"]
    message: str | None = None
    backbone: str
    weights: str | None = None
    report_split: str | None = None
    metrics: dict[str, float | None] = {}
    confidence_intervals: dict[str, tuple[float, float]] = {}
    majority_baseline: dict[str, float | None] = {}
    validation_auc: float | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None
    train_seconds: float | None = None
    wall_seconds: float
    ms_per_image: float | None = None
    parameters: int | None = None
    flops_per_image: float | None = None


def load_spec(path: Path) -> GridSpec:
    spec = GridSpec.model_validate(yaml.safe_load(path.read_text()))
    base = dict(spec.base)
    for key in ("data_dir", "output_dir"):
        if key in base and not Path(base[key]).is_absolute():
            base[key] = str((path.parent / base[key]).resolve())
    return spec.model_copy(update={"base": base})
