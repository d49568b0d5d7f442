"""The records an evaluation produces: what ``report.json`` holds, validated both ways by pydantic.

Kept free of torch and ONNX Runtime imports, so a report can be read back (and re-rendered) anywhere.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from service.contract import SourceMetrics
from training.stats.metrics import MetricValues


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfidenceInterval(_Record):
    low: float
    high: float


class BootstrapSettings(_Record):
    resamples: int = Field(ge=0, description="0 = no confidence intervals")
    seed: int
    level: float = Field(0.95, gt=0.0, lt=1.0)
    method: str = (
        "percentile bootstrap, stratified: films are resampled with replacement within each true class, "
        "so every resample keeps the split's class counts (AUC, sensitivity and specificity stay defined); "
        "it therefore leaves out the uncertainty of the prevalence itself"
    )


class ClassScores(_Record):
    """One class against the rest, at the report's decision rule (threshold or argmax)."""

    name: str
    support: int = Field(description="films whose true class this is")
    predicted: int = Field(description="films called this class")
    precision: float | None
    recall: float | None = Field(description="sensitivity")
    specificity: float | None
    f1: float | None
    dice: float | None = Field(description="2TP / (2TP + FP + FN): equals F1 for single-label classification")
    auc_ovr: float | None = Field(description="one-vs-rest ROC AUC of this class's probability")


class ReliabilityBin(_Record):
    lower: float
    upper: float
    count: int
    mean_predicted: float | None = Field(description="mean confidence (or probability) of its films")
    observed: float | None = Field(description="share of its films that were right (or positive)")


class Reliability(_Record):
    """Reliability-diagram data and the expected calibration error of one probability."""

    quantity: str = Field(description="what was binned: 'top-class confidence' or 'p(<class>)'")
    ece: float = Field(description="sum over bins of (films in bin / N) * |observed - mean predicted|")
    bins: list[ReliabilityBin]


class RocCurve(_Record):
    class_name: str = Field(description="the class scored against the rest")
    false_positive_rate: list[float]
    true_positive_rate: list[float]
    auc: float | None


class Scores(_Record):
    """Everything measured from one set of predicted probabilities on the evaluated films."""

    metrics: MetricValues
    per_class: list[ClassScores]
    confusion_matrix: list[list[int]] = Field(description="rows = true class, columns = predicted class")
    reliability: list[Reliability]
    roc: list[RocCurve]
    distinct_predicted_classes: int
    collapsed: bool = Field(description="every film predicted as the same class")


class Timing(_Record):
    runtime: str
    batch_size: int
    images_timed: int
    ms_per_image: float = Field(description="wall time over every batch after one warm-up batch")


class Complexity(_Record):
    parameters: int
    parameters_counted: str = Field(description="what was counted")
    flops_per_image: int | None
    flops_note: str = Field(description="how the FLOPs were counted, or why they are unknown")


class ModelIdentity(_Record):
    kind: Literal["pytorch", "onnx"]
    source: str = Field(description="checkpoint or ONNX file evaluated")
    architecture: str | None = None
    name: str | None = None
    version: str | None = None
    temperature: float | None = Field(None, description="softmax temperature, when known")
    onnx_sha256: str | None = None


class GalleryCase(_Record):
    index: int = Field(description="position of the film in the evaluated split")
    true_class: str
    predicted_class: str
    confidence: float = Field(description="probability of the predicted class")
    correct: bool


@dataclass(frozen=True)
class GalleryFilms:
    """The pixels behind ``EvaluationReport.gallery``: films ``[k, H, W]`` and the predicted class's
    raw Grad-CAM ``[k, h, w]``, in the same order."""

    films: npt.NDArray[np.float32]
    cams: npt.NDArray[np.float32]


class EvaluationReport(_Record):
    schema_version: Literal[1] = 1
    created_at: datetime
    model: ModelIdentity
    split: str
    n: int
    class_names: list[str]
    positive_class: str | None
    threshold: float | None = Field(description="p(positive) decision threshold; None = argmax")
    scores: Scores
    confidence_intervals: dict[str, ConfidenceInterval]
    bootstrap: BootstrapSettings
    baseline: Scores = Field(description="always the training split's most frequent class")
    baseline_prior: list[float] = Field(description="training-split class frequencies, its probabilities")
    timing: Timing
    complexity: Complexity
    training_seconds: float | None
    collapsed: bool
    collapse_message: str | None
    gallery: list[GalleryCase]
    per_source: dict[str, SourceMetrics] | None = Field(
        None, description="each source's films alone at the same operating point (multi-source runs)"
    )
    # Film pixels stay out of report.json (films can identify patients, and they would dwarf the
    # numbers); they ride along on the object so ``write_report`` can draw the gallery.
    _gallery_films: GalleryFilms | None = PrivateAttr(None)

    @property
    def gallery_films(self) -> GalleryFilms | None:
        return self._gallery_films

    def with_gallery_films(self, films: GalleryFilms) -> "EvaluationReport":
        if len(films.films) != len(self.gallery) or len(films.cams) != len(self.gallery):
            raise ValueError("gallery films and cases differ in number")
        report = self.model_copy()
        report._gallery_films = films
        return report
