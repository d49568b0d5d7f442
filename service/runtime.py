"""ONNX Runtime model loading and inference.

``ModelRuntime.load`` refuses to return unless the model directory is internally consistent: the
card parses, ``model.onnx`` hashes to the card's sha256, the graph's input/outputs match the card's
pixel contract and class list, and a warm-up run produces outputs of the declared shapes. A model
that passes is safe to serve; one that does not stops the process with a ``ModelLoadError`` that
says what to fix. Nothing here depends on HTTP, so the same checks can run from a shell.
"""

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from pydantic import ValidationError

from service.contract import (
    PREPROCESSING_VERSION,
    DecisionThreshold,
    DecodedImage,
    DecodeLimits,
    ModelCard,
    load_model_input,
)
from service.contract.model_card import (
    CAM_OUTPUT,
    CARD_FILENAME,
    INPUT_NAME,
    ONNX_FILENAME,
    PROBABILITIES_OUTPUT,
)
from service.settings import LATEST, Settings

logger = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
_PROBABILITY_SUM_TOLERANCE = 1e-3


class ModelLoadError(RuntimeError):
    """The configured model cannot be served; the message says which check failed and why."""


class ModelOutputError(RuntimeError):
    """The model produced outputs that cannot be reported (wrong shape, NaN...): a server fault."""


@dataclass(frozen=True)
class Inference:
    """One film's outputs: softmax over classes, and the raw Grad-CAM map of every class."""

    probabilities: npt.NDArray[np.float32]  # [C], finite, sums to 1
    cams: npt.NDArray[np.float32]  # [C, h, w], finite, non-negative
    inference_ms: float
    ood_score: float | None = None  # only for models whose card declares an OOD detector


def resolve_model_dir(settings: Settings) -> Path:
    """The version directory to load: ``model_dir`` if set, else ``model_store/name/version``."""
    if settings.model_dir is not None:
        return settings.model_dir
    name_dir = settings.model_store / settings.model_name
    if settings.model_version != LATEST:
        return name_dir / settings.model_version
    if not name_dir.is_dir():
        raise ModelLoadError(
            f"Model store directory {name_dir} does not exist (CXR_MODEL_STORE={settings.model_store}, "
            f"CXR_MODEL_NAME={settings.model_name})."
        )
    # Plain string sort, as documented: use sortable version names (timestamps, v001...). Hidden
    # folders are exports still being staged, never a version.
    versions = sorted(
        p.name for p in name_dir.iterdir() if not p.name.startswith(".") and (p / CARD_FILENAME).is_file()
    )
    if not versions:
        raise ModelLoadError(f"No version directory containing {CARD_FILENAME} under {name_dir}.")
    return name_dir / versions[-1]


def select_providers(requested: str, available: list[str]) -> list[str]:
    """Execution providers in preference order; CPU is always last so ORT can fall back per node."""
    if requested == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if requested == "cuda":
        raise ModelLoadError(
            f"CXR_EXECUTION_PROVIDER=cuda but this onnxruntime build offers only {available}; "
            "install onnxruntime-gpu with a matching CUDA, or set CXR_EXECUTION_PROVIDER=cpu or auto."
        )
    return [CPU]


def load_card(model_dir: Path) -> ModelCard:
    card_path = model_dir / CARD_FILENAME
    if not card_path.is_file():
        raise ModelLoadError(f"Model card {card_path} not found.")
    try:
        card = ModelCard.model_validate_json(card_path.read_bytes())
    except ValidationError as exc:
        raise ModelLoadError(f"Model card {card_path} is invalid: {exc}") from exc
    _check_card(card, card_path)
    return card


def _check_card(card: ModelCard, card_path: Path) -> None:
    if len(set(card.class_names)) != len(card.class_names):
        raise ModelLoadError(f"Model card {card_path}: class_names {card.class_names} has duplicates.")
    contract = card.pixel_contract
    if contract.preprocessing != PREPROCESSING_VERSION:
        raise ModelLoadError(
            f"Model card {card_path}: the model was trained with preprocessing {contract.preprocessing!r} "
            f"but this service implements {PREPROCESSING_VERSION!r}; re-export the model or deploy the "
            "service version that matches it."
        )
    if contract.input_name != INPUT_NAME:
        raise ModelLoadError(
            f"Model card {card_path}: pixel_contract.input_name is {contract.input_name!r}, "
            f"expected {INPUT_NAME!r}."
        )
    threshold = card.decision_threshold
    if threshold is not None and threshold.positive_class not in card.class_names:
        raise ModelLoadError(
            f"Model card {card_path}: decision_threshold.positive_class {threshold.positive_class!r} "
            f"is not one of class_names {card.class_names}."
        )


def _check_graph(session: ort.InferenceSession, card: ModelCard, onnx_path: Path) -> None:
    """Compare the graph's declared input/outputs with the card, before trusting either."""
    contract = card.pixel_contract
    inputs = session.get_inputs()
    if [i.name for i in inputs] != [contract.input_name]:
        raise ModelLoadError(
            f"{onnx_path}: graph inputs are {[i.name for i in inputs]}, the card expects exactly "
            f"[{contract.input_name!r}]."
        )
    image = inputs[0]
    if image.type != "tensor(float)":
        raise ModelLoadError(f"{onnx_path}: input {image.name!r} is {image.type}, expected tensor(float).")
    expected = [contract.channels, contract.height, contract.width]
    shape = list(image.shape)
    batch_ok = len(shape) == 4 and (not isinstance(shape[0], int) or shape[0] in (-1, 1))
    if not batch_ok or shape[1:] != expected:
        raise ModelLoadError(
            f"{onnx_path}: input {image.name!r} has shape {shape}, but the card's pixel_contract says "
            f"[N, {contract.channels}, {contract.height}, {contract.width}] (NCHW)."
        )
    outputs = {o.name: o for o in session.get_outputs()}
    missing = {PROBABILITIES_OUTPUT, CAM_OUTPUT} - outputs.keys()
    if missing:
        raise ModelLoadError(
            f"{onnx_path}: graph outputs are {sorted(outputs)}; missing {sorted(missing)} "
            f"(expected {PROBABILITIES_OUTPUT!r} [N, C] and {CAM_OUTPUT!r} [N, C, h, w])."
        )
    if card.ood is not None and card.ood.output_name not in outputs:
        raise ModelLoadError(
            f"{onnx_path}: the card declares an out-of-distribution detector but the graph has no "
            f"{card.ood.output_name!r} output."
        )
    n_classes = len(card.class_names)
    probs_shape = list(outputs[PROBABILITIES_OUTPUT].shape)
    cam_shape = list(outputs[CAM_OUTPUT].shape)
    # Symbolic dims are checked on the warm-up run instead; static ones must agree now.
    if len(probs_shape) != 2 or probs_shape[1] not in (n_classes, *_symbolic(probs_shape[1])):
        raise ModelLoadError(
            f"{onnx_path}: output {PROBABILITIES_OUTPUT!r} has shape {probs_shape}, expected "
            f"[N, {n_classes}] for classes {card.class_names}."
        )
    if len(cam_shape) != 4 or cam_shape[1] not in (n_classes, *_symbolic(cam_shape[1])):
        raise ModelLoadError(
            f"{onnx_path}: output {CAM_OUTPUT!r} has shape {cam_shape}, expected [N, {n_classes}, h, w]."
        )


def _symbolic(dim: Any) -> tuple[Any, ...]:
    return () if isinstance(dim, int) else (dim,)


class ModelRuntime:
    """A validated model: its card, its ONNX Runtime session, and the provider really in use."""

    def __init__(
        self,
        model_dir: Path,
        card: ModelCard,
        session: ort.InferenceSession,
        sha256: str,
        threshold_override: float | None = None,
    ) -> None:
        self.model_dir = model_dir
        self.card = card
        self.sha256 = sha256
        self._session = session
        self.provider: str = session.get_providers()[0]
        self.threshold = _operating_point(card, threshold_override)
        self._outputs = [PROBABILITIES_OUTPUT, CAM_OUTPUT] + ([card.ood.output_name] if card.ood else [])

    @classmethod
    def load(cls, settings: Settings) -> "ModelRuntime":
        model_dir = resolve_model_dir(settings)
        if not model_dir.is_dir():
            raise ModelLoadError(f"Model directory {model_dir} does not exist.")
        card = load_card(model_dir)
        onnx_path = model_dir / ONNX_FILENAME
        if not onnx_path.is_file():
            raise ModelLoadError(f"ONNX file {onnx_path} not found.")
        # Hash and load the same bytes, so the file cannot change between the check and the load.
        model_bytes = onnx_path.read_bytes()
        sha256 = hashlib.sha256(model_bytes).hexdigest()
        if sha256 != card.onnx_sha256:
            raise ModelLoadError(
                f"{onnx_path} has sha256 {sha256} but {CARD_FILENAME} says {card.onnx_sha256}: the model "
                "file was modified or does not belong to this card. Refusing to serve it."
            )
        providers = select_providers(settings.execution_provider, ort.get_available_providers())
        session = _create_session(model_bytes, providers, settings, onnx_path)
        in_use = session.get_providers()[0]
        if settings.execution_provider == "cuda" and in_use != CUDA:
            raise ModelLoadError(
                f"CXR_EXECUTION_PROVIDER=cuda but ONNX Runtime fell back to {in_use} (CUDA/cuDNN libraries "
                "missing or no GPU visible); fix the GPU setup or set CXR_EXECUTION_PROVIDER=cpu or auto."
            )
        if providers[0] == CUDA and in_use != CUDA:
            logger.warning("CUDA provider available but not usable; running on %s", in_use)
        _check_graph(session, card, onnx_path)
        runtime = cls(model_dir, card, session, sha256, settings.decision_threshold)
        runtime._warm_up(onnx_path)
        if settings.model_dir is None and card.name != settings.model_name:
            logger.warning(
                "model card name %r differs from CXR_MODEL_NAME %r", card.name, settings.model_name
            )
        logger.info(
            "model loaded",
            extra={
                "model_name": card.name,
                "model_version": card.version,
                "model_dir": str(model_dir),
                "onnx_sha256": sha256,
                "execution_provider": runtime.provider,
                "input_shape": [1, 1, card.pixel_contract.height, card.pixel_contract.width],
            },
        )
        return runtime

    def _warm_up(self, onnx_path: Path) -> None:
        """One run on a blank film: allocates kernels and checks the real output shapes."""
        contract = self.card.pixel_contract
        blank = np.zeros((1, contract.height, contract.width), dtype=np.float32)
        try:
            self.infer(blank)
        except ModelOutputError as exc:
            raise ModelLoadError(f"{onnx_path}: warm-up inference failed: {exc}") from exc

    @property
    def class_names(self) -> list[str]:
        return list(self.card.class_names)

    def prepare(self, data: bytes, max_pixels: int) -> tuple[npt.NDArray[np.float32], DecodedImage]:
        """Uploaded bytes -> this model's input, through the contract training uses for its datasets."""
        contract = self.card.pixel_contract
        return load_model_input(data, contract.height, contract.width, DecodeLimits(max_pixels=max_pixels))

    def infer(self, image: npt.NDArray[np.float32]) -> Inference:
        """Run one preprocessed film ``[1, H, W]``. Thread-safe: ORT sessions allow concurrent runs."""
        batch = np.ascontiguousarray(image[np.newaxis], dtype=np.float32)
        start = time.perf_counter()
        outputs = self._session.run(self._outputs, {self.card.pixel_contract.input_name: batch})
        inference_ms = (time.perf_counter() - start) * 1000.0
        return Inference(
            probabilities=self._checked_probabilities(np.asarray(outputs[0])),
            cams=self._checked_cams(np.asarray(outputs[1])),
            inference_ms=inference_ms,
            ood_score=self._checked_ood_score(np.asarray(outputs[2])) if len(outputs) > 2 else None,
        )

    def _checked_ood_score(self, scores: npt.NDArray[Any]) -> float:
        if scores.shape != (1,) or not np.isfinite(scores[0]):
            raise ModelOutputError(f"ood_score has shape {scores.shape} or is not finite, expected (1,)")
        return float(scores[0])

    def is_out_of_distribution(self, inference: Inference) -> bool:
        """True when the card has a detector and the film scores above its validated threshold."""
        detector = self.card.ood
        return (
            detector is not None
            and inference.ood_score is not None
            and inference.ood_score > detector.threshold
        )

    def triage_level(self, predicted_class: str) -> str | None:
        """``urgent`` when a binary model calls the positive class at its operating point, else routine."""
        if self.threshold is None:
            return None
        return "urgent" if predicted_class == self.threshold.positive_class else "routine"

    def _checked_probabilities(self, probabilities: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        n_classes = len(self.card.class_names)
        if probabilities.shape != (1, n_classes):
            raise ModelOutputError(
                f"{PROBABILITIES_OUTPUT} has shape {probabilities.shape}, expected (1, {n_classes})"
            )
        row: npt.NDArray[np.float32] = probabilities[0].astype(np.float32)
        if not np.all(np.isfinite(row)) or np.any(row < 0):
            raise ModelOutputError(f"{PROBABILITIES_OUTPUT} is not a probability vector")
        if abs(float(row.sum()) - 1.0) > _PROBABILITY_SUM_TOLERANCE:
            raise ModelOutputError(f"{PROBABILITIES_OUTPUT} sums to {float(row.sum()):.4f}, not 1 (softmax?)")
        return row

    def _checked_cams(self, cams: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        n_classes = len(self.card.class_names)
        if cams.ndim != 4 or cams.shape[:2] != (1, n_classes) or min(cams.shape[2:]) < 1:
            raise ModelOutputError(f"{CAM_OUTPUT} has shape {cams.shape}, expected (1, {n_classes}, h, w)")
        # A CAM is a display aid: non-finite or negative cells are drawn as "no evidence", not an error.
        finite = np.nan_to_num(cams[0].astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        clipped: npt.NDArray[np.float32] = np.clip(finite, 0.0, None)
        return clipped

    def decide(self, probabilities: npt.NDArray[np.float32]) -> str:
        """``positive_class`` iff p(positive) >= threshold for a binary model with one, else argmax."""
        names = self.card.class_names
        threshold = self.threshold
        if threshold is not None:
            positive = names.index(threshold.positive_class)
            # Compared in float32, the dtype the model emits: a card value written as 0.9 must still
            # match a probability of float32(0.9), which is slightly below 0.9 as a float64.
            if np.float32(probabilities[positive]) >= np.float32(threshold.value):
                return names[positive]
            return names[1 - positive]
        return names[int(np.argmax(probabilities))]


def _operating_point(card: ModelCard, override: float | None) -> DecisionThreshold | None:
    """The card's threshold for a binary model, or the deployment's override of it, said as such."""
    threshold = card.decision_threshold if len(card.class_names) == 2 else None
    if override is None:
        return threshold
    if threshold is None:
        raise ModelLoadError(
            "CXR_DECISION_THRESHOLD is set, but the model has no binary operating point to override."
        )
    return threshold.model_copy(
        update={
            "value": override,
            "method": f"deployment override CXR_DECISION_THRESHOLD={override} (the card's validated "
            f"operating point is {threshold.value:.4f}, {threshold.method})",
            # Unknown at a threshold nobody validated: reporting the card's figures would mislead.
            "validation_sensitivity": None,
            "validation_specificity": None,
        }
    )


def _create_session(
    model_bytes: bytes, providers: list[str], settings: Settings, onnx_path: Path
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    # Requests are already parallel (one film each); a second level of parallelism only oversubscribes.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: ORT writes straight to stderr, outside our log format
    try:
        return ort.InferenceSession(model_bytes, sess_options=options, providers=providers)
    except Exception as exc:  # ORT raises bare RuntimeError/Fail subclasses; all mean "not loadable"
        raise ModelLoadError(f"ONNX Runtime cannot load {onnx_path}: {type(exc).__name__}: {exc}") from exc
