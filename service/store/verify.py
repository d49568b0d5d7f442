"""The checks a model directory passes before anything serves it: the card, the graph, the file.

The card parses and agrees with this service's preprocessing; the graph's input/outputs match the
card's pixel contract and class list; no tensor keeps its data outside the hashed file.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort
from pydantic import ValidationError

from service.contract import PREPROCESSING_VERSION, ModelCard
from service.contract.model_card import (
    CAM_OUTPUT,
    CARD_FILENAME,
    INPUT_NAME,
    ONNX_FILENAME,
    PROBABILITIES_OUTPUT,
)
from service.store.errors import ModelLoadError, ModelNotFoundError
from service.store.external_data import MalformedModelError, external_data_tensors


@dataclass(frozen=True)
class VerifiedFiles:
    """A version directory whose card and ONNX bytes passed every check that needs no session."""

    card: ModelCard
    onnx_path: Path
    model_bytes: bytes
    sha256: str


def read_verified(model_dir: Path) -> VerifiedFiles:
    """The card and the ONNX bytes of ``model_dir``, checked against each other, or a ``ModelLoadError``."""
    if not model_dir.is_dir():
        raise ModelNotFoundError(f"Model directory {model_dir} does not exist.")
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
    refuse_external_data(model_bytes, onnx_path)
    return VerifiedFiles(card, onnx_path, model_bytes, sha256)


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


def check_graph(session: ort.InferenceSession, card: ModelCard, onnx_path: Path) -> None:
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


def refuse_external_data(model_bytes: bytes, onnx_path: Path) -> None:
    try:
        external = external_data_tensors(model_bytes)
    except MalformedModelError as exc:
        raise ModelLoadError(f"{onnx_path} is not a well-formed ONNX protobuf ({exc}).") from exc
    if external:
        shown = ", ".join(repr(name) for name in external[:5]) + (", ..." if len(external) > 5 else "")
        raise ModelLoadError(
            f"{onnx_path}: {len(external)} tensor(s) keep their data outside the file ({shown}). "
            "External data is not covered by the card's sha256, so it is refused; re-export with "
            "the weights inside model.onnx (onnx.save_model(..., save_as_external_data=False))."
        )
