"""The model card: the JSON written beside ``model.onnx`` that tells the service how to use it."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.contract.preprocess import PREPROCESSING_VERSION

CARD_FILENAME = "model_card.json"
ONNX_FILENAME = "model.onnx"
INPUT_NAME = "image"
PROBABILITIES_OUTPUT = "probabilities"
CAM_OUTPUT = "cam"
OOD_OUTPUT = "ood_score"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PixelContract(_Strict):
    """What the ONNX input expects. The service refuses a model whose graph disagrees with this."""

    input_name: str = INPUT_NAME
    layout: Literal["NCHW"] = "NCHW"
    channels: Literal[1] = 1
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    dtype: Literal["float32"] = "float32"
    value_range: tuple[float, float] = (0.0, 1.0)
    preprocessing: str = PREPROCESSING_VERSION
    description: str = (
        "Grayscale film, bilinear-resized to height x width, intensities stretched so the 0.5th and "
        "99.5th percentiles map to 0 and 1 (clipped). Backbone normalisation and channel repetition "
        "are inside the graph."
    )


class SplitSummary(_Strict):
    images: int
    patients: int
    per_class: dict[str, int]


class TrainingDataSummary(_Strict):
    source: str
    split_method: str
    seed: int
    splits: dict[str, SplitSummary]


class SourceMetrics(_Strict):
    """One source's films scored at the card's operating point."""

    films: int = Field(ge=0)
    positives: int = Field(ge=0)
    auc: float | None = Field(None, description="None = one class only")
    sensitivity: float | None = None
    specificity: float | None = None


class ShiftResult(_Strict):
    """The model on validation films under one acquisition shift at one severity (0 = unshifted)."""

    shift: str
    severity: int = Field(ge=0)
    setting: str
    auc: float | None
    sensitivity: float | None
    specificity: float | None
    per_source_auc: dict[str, float | None] = Field(default_factory=dict)


class ShiftBenchmark(_Strict):
    """``python -m training evaluate --shift``: the in-house stand-in for films from other sites."""

    films: int
    per_source_films: dict[str, int] = Field(default_factory=dict)
    results: list[ShiftResult]


class DecisionThreshold(_Strict):
    """Probability of ``positive_class`` at or above which the film is called positive."""

    positive_class: str
    value: float = Field(ge=0.0, le=1.0)
    method: str
    validation_sensitivity: float | None = Field(None, description="at this threshold, on validation")
    validation_specificity: float | None = None
    target_sensitivity: float | None = Field(
        None, gt=0.0, le=1.0, description="the validation sensitivity it was chosen to reach; None = Youden"
    )
    per_source: dict[str, SourceMetrics] | None = Field(
        None, description="each source's validation films at this threshold (multi-source runs)"
    )


class Calibration(_Strict):
    """How the exported probabilities were calibrated on validation (folded into the graph)."""

    method: str
    temperature: float = Field(gt=0.0, description="logits are divided by this before the softmax")
    validation_ece_before: float = Field(ge=0.0, le=1.0, description="expected calibration error, T = 1")
    validation_ece_after: float = Field(ge=0.0, le=1.0)
    validation_cross_entropy_before: float = Field(ge=0.0)
    validation_cross_entropy_after: float = Field(ge=0.0)


class OodDetector(_Strict):
    """The in-graph out-of-distribution score and the threshold above which a film is refused."""

    output_name: str = OOD_OUTPUT
    method: str
    threshold: float = Field(gt=0.0)
    validation_quantile: float = Field(gt=0.0, le=1.0)
    validation_rejection_rate: float = Field(ge=0.0, le=1.0)


class Quantisation(_Strict):
    """How a quantised version was derived from its float source, and what that cost on validation."""

    method: str
    source_version: str
    source_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    calibration_films: int = Field(
        ge=0, description="training-split films that set activation ranges (0: fp16, nothing to calibrate)"
    )
    source_validation_metrics: dict[str, float | None]
    max_probability_difference: float = Field(ge=0.0, description="vs the source, on validation")
    decision_agreement: float = Field(ge=0.0, le=1.0, description="share of validation films called alike")
    cam_correlation: float = Field(description="mean Pearson r of the Grad-CAM maps vs the source")


class ModelCard(_Strict):
    schema_version: Literal[1] = 1
    name: str
    version: str
    created_at: datetime
    git_commit: str | None
    architecture: str
    weights: str = Field(description="Where the initial weights came from (package, file, or random).")
    class_names: list[str] = Field(min_length=2)
    pixel_contract: PixelContract
    outputs: dict[str, str] = Field(
        default_factory=lambda: {
            "probabilities": f"{PROBABILITIES_OUTPUT} [N, C] softmax",
            "cam": f"{CAM_OUTPUT} [N, C, h, w] Grad-CAM of each class logit at the last conv layer",
        }
    )
    training_data: TrainingDataSummary
    validation_metrics: dict[str, float | None] = Field(description="None = undefined for this split")
    majority_baseline: dict[str, float | None]
    decision_threshold: DecisionThreshold | None
    calibration: Calibration | None = Field(None, description="None = raw softmax (temperature 1)")
    ood: OodDetector | None = None
    onnx_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    opset: int
    quantisation: Quantisation | None = Field(None, description="None = the float graph as exported")
    intended_population: str | None = Field(None, description="who the model is for, and its sources")
    shift_benchmark: ShiftBenchmark | None = Field(None, description="None = not measured at export")


def binary_threshold(card: ModelCard) -> DecisionThreshold | None:
    """The card's decision threshold where one applies: binary models only; the others decide by argmax."""
    return card.decision_threshold if len(card.class_names) == 2 else None
