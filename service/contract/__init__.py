"""The preprocessing contract: the only place that turns uploaded bytes into a model input.

Training, evaluation and the service all call :func:`load_model_input` (or its two halves,
:func:`decode_image` and :func:`to_model_input`), so a film gives the same tensor everywhere.
Dependencies are numpy, Pillow and pydicom only - never torch.
"""

from service.contract.decode import DecodedImage, DecodeLimits, DicomInfo, SourceFormat, decode_image
from service.contract.errors import InputError
from service.contract.model_card import (
    Calibration,
    DecisionThreshold,
    ModelCard,
    OodDetector,
    PixelContract,
    ShiftBenchmark,
    ShiftResult,
    SourceMetrics,
    SplitSummary,
    TrainingDataSummary,
)
from service.contract.preprocess import PREPROCESSING_VERSION, load_model_input, to_model_input
from service.contract.raster import decode_array

__all__ = [
    "PREPROCESSING_VERSION",
    "Calibration",
    "DecisionThreshold",
    "DecodeLimits",
    "DecodedImage",
    "DicomInfo",
    "InputError",
    "ModelCard",
    "OodDetector",
    "PixelContract",
    "ShiftBenchmark",
    "ShiftResult",
    "SourceFormat",
    "SourceMetrics",
    "SplitSummary",
    "TrainingDataSummary",
    "decode_array",
    "decode_image",
    "load_model_input",
    "to_model_input",
]
