"""INT8 static quantisation (for CPUs) or an fp16 copy (for GPUs) of an exported model, published as
a new store version beside it.

Only the backbone's convolutions, their ReLU6 and the residual additions are quantised (QDQ,
per-channel int8 weights, uint8 activations calibrated on training films): they are where the time
goes. The stem and the last convolution stay float, as accuracy-sensitive ends. The Grad-CAM
vector-Jacobian product and the Mahalanobis distances of the OOD score stay float - a quantised
precision matrix would move the score by more than its threshold's margin.

The new version is measured, not assumed: its validation metrics come from running the int8 graph
on the run's validation films, the fp32 figures stand beside them, and the OOD threshold is re-set
by the same validation-quantile rule on the int8 scores (the features moved, so the old threshold
would refuse a different share of real films). The fp16 version is measured the same way; its
speed only shows on a GPU (CUDA or TensorRT), but its accuracy can be checked anywhere.
"""

import logging
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from service.contract import ModelCard
from service.contract.model_card import (
    CARD_FILENAME,
    ONNX_FILENAME,
    DecisionThreshold,
    OodDetector,
    Quantisation,
)
from training.data.inputs import load_inputs
from training.export.graph_outputs import run_graph
from training.export.staging import check_free, git_commit, sha256_file, staged_version, write_card
from training.fit.checkpoint import split_samples
from training.fit.run_folder import read_summary
from training.ood.statistics import VALIDATION_QUANTILE
from training.stats.calibration import operating_threshold
from training.stats.metrics import (
    IntArray,
    MetricValues,
    check_not_collapsed,
    classification_metrics,
    decision_rule,
    predict_labels,
)

log = logging.getLogger(__name__)

CALIBRATION_FILMS = 256
# Conv with the ReLU6 (Clip) after it and the residual Adds: an unquantised Clip would leave the conv
# output calibrated over its pre-activation range, wasting most of uint8 on values Clip discards.
QUANTISED_OPS = ["Conv", "Clip", "Add"]
METHOD = (
    "ONNX Runtime static QDQ: Conv, Clip and Add except the stem and last conv, per-channel int8 "
    "weights, uint8 activations, MinMax calibration; operating point and OOD threshold re-set on "
    "validation by the source's rules"
)
FP16_METHOD = (
    "onnxruntime.transformers.float16: every float tensor and operation in fp16, the image input and "
    "the outputs kept float32 (the pixel contract is unchanged); operating point and OOD threshold "
    "re-set on validation by the source's rules"
)
_BATCH = 32
FloatArray = npt.NDArray[np.float32]
Precision = Literal["int8", "fp16"]


class _Films(CalibrationDataReader):  # type: ignore[misc]  # ORT ships no type hints
    """Feeds calibration batches to ORT's calibrator, one ``{input_name: batch}`` at a time."""

    def __init__(self, input_name: str, films: FloatArray) -> None:
        self._batches: Iterator[FloatArray] = iter(np.array_split(films, max(1, len(films) // _BATCH)))
        self._input_name = input_name

    def get_next(self) -> dict[str, FloatArray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._input_name: batch}


def _calibration_indices(train_labels: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """An even, seeded draw from each class, so the minority class's activations set ranges too."""
    rng = np.random.default_rng(0)
    classes = np.unique(train_labels)
    per_class = CALIBRATION_FILMS // len(classes)
    picked = [
        rng.choice(np.flatnonzero(train_labels == c), min(per_class, int(np.sum(train_labels == c))), False)
        for c in classes
    ]
    return np.sort(np.concatenate(picked))


def mean_cam_correlation(reference: FloatArray, other: FloatArray) -> float:
    """Mean Pearson r between the two graphs' maps, per film and class (flat maps count as r = 1)."""
    a = reference.reshape(reference.shape[0] * reference.shape[1], -1).astype(np.float64)
    b = other.reshape(a.shape).astype(np.float64)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    safe = norms > 0
    r = np.ones(len(a))
    r[safe] = np.sum(a[safe] * b[safe], axis=1) / norms[safe]
    return float(r.mean())


def _rederived(
    threshold: DecisionThreshold | None, class_names: list[str], labels: IntArray, probabilities: FloatArray
) -> DecisionThreshold | None:
    """The source's operating-point rule re-applied to the int8 probabilities, which moved a little."""
    if threshold is None:
        return None
    positive = class_names.index(threshold.positive_class)
    scores = probabilities[:, positive].astype(np.float64)
    value, _ = operating_threshold(labels, scores, positive, threshold.target_sensitivity)
    return threshold.model_copy(update={"value": value})


def _with_rates(threshold: DecisionThreshold | None, metrics: MetricValues) -> DecisionThreshold | None:
    if threshold is None:
        return None
    update = {
        k: metrics.get(k.removeprefix("validation_"))
        for k in ("validation_sensitivity", "validation_specificity")
    }
    return threshold.model_copy(update=update)


def _quantise_graph(source: Path, target: Path, input_name: str, calibration: FloatArray) -> None:
    prepared = target.with_name("prepared.onnx")
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    convs = [node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "Conv"]
    # The stem sees raw intensities and the last conv feeds Grad-CAM and the OOD score: int8 there
    # cost the most agreement with the float graph (on the Kermany model). A two-conv model keeps
    # none float, or there would be nothing left to quantise.
    kept_float = [convs[0], convs[-1]] if len(convs) > 2 else []
    log.info("calibrating on %d training films", len(calibration))
    quantize_static(
        str(prepared),
        str(target),
        _Films(input_name, calibration),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=QUANTISED_OPS,
        nodes_to_exclude=kept_float,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    prepared.unlink()
    if not any(node.op_type == "QuantizeLinear" for node in onnx.load(str(target)).graph.node):
        raise ValueError(f"{source} has no convolution to quantise")


def _half_graph(source: Path, target: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))


def _requantised_ood(ood: OodDetector | None, scores: FloatArray | None) -> OodDetector | None:
    if ood is None or scores is None:
        return None
    threshold = float(np.quantile(scores.astype(np.float64), VALIDATION_QUANTILE))
    rate = float(np.mean(scores > threshold))
    return ood.model_copy(update={"threshold": threshold, "validation_rejection_rate": rate})


def _films(run_dir: Path, card: ModelCard, precision: Precision) -> tuple[FloatArray, IntArray, FloatArray]:
    """Validation films and labels, and for int8 the calibration draw from the train split.

    Only the films used are read through the contract, never the whole train split.
    """
    samples = split_samples(run_dir, card.class_names)
    height, width = card.pixel_contract.height, card.pixel_contract.width
    validation = load_inputs(samples["validation"], height, width)
    labels = np.array([s.label for s in samples["validation"]], dtype=np.int64)
    train = samples["train"]
    picked: list[int] = []
    if precision == "int8":
        picked = _calibration_indices(np.array([s.label for s in train], dtype=np.int64)).tolist()
    return validation, labels, load_inputs([train[i] for i in picked], height, width)


def quantize_model(
    model_dir: Path, run_dir: Path, version: str | None = None, precision: Precision = "int8"
) -> Path:
    """Quantise ``model_dir`` (an fp32 store version exported from ``run_dir``) into a sibling version
    (default name ``<version>-<precision>``)."""
    card = ModelCard.model_validate_json((model_dir / CARD_FILENAME).read_text())
    if card.quantisation is not None:
        raise ValueError(f"{model_dir} is already quantised ({card.quantisation.method})")
    if read_summary(run_dir).class_names != card.class_names:
        raise ValueError(f"run {run_dir} does not match model {card.name} {card.version}: class names differ")
    version = version or f"{card.version}-{precision}"
    target = model_dir.parent / version
    check_free(target)
    contract, names = card.pixel_contract, card.class_names
    validation, labels, calibration = _films(run_dir, card, precision)

    with staged_version(target) as staging:
        onnx_path = staging / ONNX_FILENAME
        if precision == "int8":
            _quantise_graph(model_dir / ONNX_FILENAME, onnx_path, contract.input_name, calibration)
        else:
            _half_graph(model_dir / ONNX_FILENAME, onnx_path)
        reference = run_graph(model_dir / ONNX_FILENAME, card, validation)
        quantised = run_graph(onnx_path, card, validation)
        decision = _rederived(card.decision_threshold, names, labels, quantised.probabilities)
        point, source_point = (
            decision_rule(decision, names),
            decision_rule(card.decision_threshold, names),
        )
        metrics = classification_metrics(labels, quantised.probabilities.astype(np.float64), *point)
        check_not_collapsed(metrics, names, f"{precision} model {card.name} {version} validation")
        called = predict_labels(quantised.probabilities.astype(np.float64), *point)
        source_called = predict_labels(reference.probabilities.astype(np.float64), *source_point)
        quantisation = Quantisation(
            method=METHOD if precision == "int8" else FP16_METHOD,
            source_version=card.version,
            source_sha256=card.onnx_sha256,
            calibration_films=len(calibration),
            source_validation_metrics=classification_metrics(
                labels, reference.probabilities.astype(np.float64), *source_point
            ),
            max_probability_difference=float(
                np.max(np.abs(quantised.probabilities - reference.probabilities))
            ),
            decision_agreement=float(np.mean(called == source_called)),
            cam_correlation=mean_cam_correlation(reference.cam, quantised.cam),
        )
        new_card = card.model_copy(
            update={
                "version": version,
                "created_at": datetime.now(UTC),
                "git_commit": git_commit(),
                "validation_metrics": metrics,
                "decision_threshold": _with_rates(decision, metrics),
                "ood": _requantised_ood(card.ood, quantised.ood),
                "onnx_sha256": sha256_file(onnx_path),
                "quantisation": quantisation,
            }
        )
        # Re-validate: model_copy(update=...) skips validation, and the card is the service's contract.
        new_card = ModelCard.model_validate_json(new_card.model_dump_json())
        write_card(staging, new_card)
        for extra in model_dir.iterdir():
            if extra.name not in (CARD_FILENAME, ONNX_FILENAME):
                shutil.copy2(extra, staging / extra.name)
    log.info("%s version of %s %s written to %s", precision, card.name, card.version, target)
    return target
