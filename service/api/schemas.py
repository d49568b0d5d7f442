"""Response bodies of the HTTP API (the OpenAPI schema is generated from these)."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.contract import (
    Calibration,
    DecisionThreshold,
    OodDetector,
    PixelContract,
    ShiftBenchmark,
    TrainingDataSummary,
)


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class ErrorResponse(_Response):
    """Every 4xx/5xx body. ``code`` is stable and machine-readable; ``detail`` is for humans."""

    code: str = Field(examples=["unsupported_format"])
    detail: str


class ModelRef(_Response):
    name: str
    version: str


class ImageInfo(_Response):
    # The formats an upload can be (``SourceFormat`` also names in-memory arrays, which never arrive).
    source_format: Literal["png", "jpeg", "dicom"]
    width: int = Field(description="Decoded film width in pixels (before any resizing).")
    height: int


class DicomRef(_Response):
    """The only DICOM attributes echoed back: enough to attach the result to the right instance."""

    study_instance_uid: str | None = Field(
        description="The file's Study Instance UID if it is one valid UID (PS3.5 9.1); otherwise null, "
        "with a warning."
    )
    sop_instance_uid: str | None
    warnings: list[str] = Field(
        default_factory=list,
        description="Codes for what was not echoed: invalid_study_instance_uid, invalid_sop_instance_uid.",
    )


class GradCam(_Response):
    class_name: str = Field(description="The class whose Grad-CAM is drawn (the predicted class).")
    width: int
    height: int
    png_base64: str = Field(description="RGB PNG: jet heat map alpha-blended over the display-stretched film")
    film_png_base64: str | None = Field(
        None,
        description="Only with film=true: the same display-stretched film without the heat map, as a "
        "grayscale PNG of the same size, so a viewer can fade the heat map in and out (for DICOM, the "
        "only way a browser gets to see the film).",
    )


class Triage(_Response):
    """What the flag means, so a caller never has to guess: the operating point and how it performed."""

    level: Literal["urgent", "routine"]
    positive_class: str
    threshold: float
    validation_sensitivity: float | None = Field(
        description="Sensitivity at this threshold on the validation split; null for a deployment override."
    )
    validation_specificity: float | None
    meaning: str = Field(examples=["urgent = p(PNEUMONIA) >= 0.5179"])


class OutOfDistribution(_Response):
    score: float = Field(
        description="In-graph Mahalanobis score of the film's features; larger = less typical."
    )
    threshold: float = Field(description="Films scoring above this are refused with 422 out_of_distribution.")


class PredictionResponse(_Response):
    request_id: str
    model: ModelRef
    probabilities: dict[str, float] = Field(description="Softmax probability per class name; sums to 1.")
    predicted_class: str
    threshold: DecisionThreshold | None = Field(
        description="Operating point used for a binary model; null means the argmax class is reported."
    )
    triage: Triage | None = Field(description="Null for models without a binary operating point.")
    out_of_distribution: OutOfDistribution | None = Field(description="Null if the model has no detector.")
    image: ImageInfo
    dicom: DicomRef | None = Field(description="Null unless the upload was DICOM.")
    execution_provider: str = Field(examples=["CPUExecutionProvider"])
    inference_ms: float = Field(description="ONNX Runtime time for this film (decoding excluded).")
    gradcam: GradCam | None = Field(description="Null when the request asked for overlay=false.")


class ProviderFallback(_Response):
    """A GPU was wanted (``auto``) but the CPU serves: said out loud, never silent."""

    requested: str = Field(examples=["auto"])
    reason: str

    @classmethod
    def from_reason(cls, reason: str | None) -> "ProviderFallback | None":
        # Only ``auto`` can fall back: ``cuda`` refuses to start instead, ``cpu`` asked for the CPU.
        return None if reason is None else cls(requested="auto", reason=reason)


class ModelInfo(_Response):
    name: str
    version: str
    architecture: str
    created_at: datetime
    class_names: list[str]
    pixel_contract: PixelContract
    training_data: TrainingDataSummary = Field(description="The population the model was trained on.")
    decision_threshold: DecisionThreshold | None = Field(description="The operating point in use.")
    calibration: Calibration | None = Field(
        None, description="Temperature scaling folded into the graph; null = raw softmax."
    )
    out_of_distribution: OodDetector | None
    validation_metrics: dict[str, float | None] = Field(description="null = undefined on that split")
    majority_baseline: dict[str, float | None]
    intended_population: str | None = Field(None, description="Who the model is for; null = not stated.")
    shift_benchmark: ShiftBenchmark | None = Field(
        None,
        description="Validation films under acquisition shifts (severity 0 = unshifted); null = not run.",
    )
    onnx_sha256: str
    execution_provider: str
    provider_fallback: ProviderFallback | None = Field(
        None, description="Set when CXR_EXECUTION_PROVIDER=auto did not get CUDA; null otherwise."
    )


class Health(_Response):
    status: str = Field(examples=["ok"])


class Readiness(_Response):
    status: str = Field(examples=["ready"])
    model: ModelRef
    execution_provider: str
    provider_fallback: ProviderFallback | None = Field(
        None, description="Set when CXR_EXECUTION_PROVIDER=auto did not get CUDA; null otherwise."
    )


class ReloadResult(_Response):
    """A hot reload that succeeded: the model now serving new requests, and the one it replaced."""

    status: Literal["reloaded"]
    model: ModelRef
    previous: ModelRef
    onnx_sha256: str
    execution_provider: str
    provider_fallback: ProviderFallback | None


# --- GET /v1/studies (the PACS gateway's worklist) -------------------------------------------------


class StudyInstance(BaseModel):
    sop_instance_uid: str
    series_instance_uid: str
    source: str = Field(description="dimse (C-STORE) or stow (STOW-RS)")
    state: str = Field(description="queued, triaging, triaged (results not yet everywhere), done, dead")
    reason: str | None = Field(description="Why a film was dead-lettered (or its last failed attempt)")
    received_at: datetime | None
    finished_at: datetime | None
    predicted_class: str | None
    triage_level: str | None
    probability: float | None = Field(description="p(positive class) for a binary model, else of the call")
    model_name: str | None
    model_version: str | None
    delivery_state: str = Field(description="pending, retrying, delivered, none (no destination, or dead)")
    delivered_at: datetime | None = Field(description="When the last destination took the results")
    delivery_attempts: int = Field(description="Failed delivery rounds so far")
    delivery_error: str | None
    sr_instance_uid: str | None
    sc_instance_uid: str | None
    ood_score: float | None = Field(
        None,
        description="The film's out-of-distribution score (it passed: at most ood_threshold); null "
        "before triage, for a model without a detector, or for a film triaged before it was recorded",
    )
    ood_threshold: float | None = Field(None, description="The detector's threshold when it was triaged")
    result_state: Literal["pending", "available", "expired", "none"] = Field(
        "pending",
        description="Its SR and SC on this gateway: pending (not triaged yet), available (fetch them "
        "under /v1/studies/{study}/instances/{sop}/), expired (deleted after CXR_PACS_RETENTION_S; the "
        "PACS holds them), none (dead-lettered: no result)",
    )
    results_expire_at: datetime | None = Field(
        None,
        description="When retention deletes the kept results; null while delivery is pending (kept "
        "until delivered) and once deleted",
    )


class StudySummary(BaseModel):
    study_instance_uid: str
    received_at: datetime | None = Field(description="First instance received")
    finished_at: datetime | None = Field(description="Last instance finished; null while any is unfinished")
    triage_level: str | None = Field(description="urgent if any film is; routine once triaged; else null")
    probability: float | None = Field(description="Highest probability among its films")
    model_version: str | None
    delivery_state: str = Field(description="The least advanced delivery state of its films")
    instances: list[StudyInstance]


class StudyList(BaseModel):
    total: int = Field(description="Studies matching the filters")
    limit: int
    offset: int
    studies: list[StudySummary]
