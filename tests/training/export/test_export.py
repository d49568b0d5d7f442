"""The exported graph against PyTorch and against the reference Grad-CAM implementation."""

import hashlib
import json
import stat
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from service.contract import ModelCard
from service.contract.model_card import CARD_FILENAME, ONNX_FILENAME
from training.backbones.factory import Classifier, create_model
from training.export.exporter import export_onnx
from training.fit.checkpoint import load_trained_model
from training.fit.run_folder import read_summary

PARITY_TOLERANCE = 1e-4
MIN_PEARSON = 0.99


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def assert_cam_matches_grad_cam_package(model: Classifier, onnx_cam: np.ndarray, images: torch.Tensor) -> int:
    """Per image and class: our in-graph map vs pytorch-grad-cam, both resized by cv2 to the input size.

    Returns how many maps were compared (maps that are all zero in both are equal, not comparable).
    """
    height, width = images.shape[-2:]
    compared = 0
    with GradCAM(model=model, target_layers=[model.features]) as reference:
        # The package only records gradients of a target output that requires grad; a parameter-free
        # ``features`` (the MLP's resampled film) needs the input to require it. Same maps otherwise.
        reference.compute_input_gradient = True
        for cls in range(onnx_cam.shape[1]):
            expected = reference(input_tensor=images, targets=[ClassifierOutputTarget(cls)] * len(images))
            for i in range(len(images)):
                ours = cv2.resize(onnx_cam[i, cls], (width, height))
                if ours.max() <= 0 or expected[i].max() <= 0:
                    assert ours.max() <= 1e-6 and expected[i].max() <= 1e-6, "one map is empty, the other not"
                    continue
                r = np.corrcoef(ours.ravel(), expected[i].ravel())[0, 1]
                assert r >= MIN_PEARSON, f"class {cls} image {i}: Pearson r {r:.4f}"
                compared += 1
    return compared


def test_exported_tiny_model_matches_pytorch_and_grad_cam(tiny_model_dir: Path, tiny_run_dir: Path) -> None:
    model, _, summary = load_trained_model(tiny_run_dir)
    proto = onnx.load(str(tiny_model_dir / ONNX_FILENAME))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    session = _session(tiny_model_dir / ONNX_FILENAME)
    assert [o.name for o in session.get_outputs()] == ["probabilities", "cam"]
    for batch in (1, 5):  # dynamic batch
        images = torch.rand(batch, 1, summary.image_size, summary.image_size)
        probabilities, cam = session.run(None, {"image": images.numpy()})
        with torch.no_grad():
            expected = torch.softmax(model(images) / summary.temperature, dim=1).numpy()
        assert probabilities.shape == (batch, 2)
        assert np.max(np.abs(probabilities - expected)) <= PARITY_TOLERANCE
        assert cam.shape[:2] == (batch, 2)
        assert assert_cam_matches_grad_cam_package(model, cam, images) >= batch


def test_model_card_describes_the_exported_file(tiny_model_dir: Path, tiny_run_dir: Path) -> None:
    card = ModelCard.model_validate_json((tiny_model_dir / CARD_FILENAME).read_text())
    onnx_bytes = (tiny_model_dir / ONNX_FILENAME).read_bytes()
    assert card.onnx_sha256 == hashlib.sha256(onnx_bytes).hexdigest()
    assert card.class_names == ["NORMAL", "PNEUMONIA"]
    assert card.pixel_contract.height == card.pixel_contract.width == 64
    assert card.decision_threshold is not None
    assert card.decision_threshold.positive_class == "PNEUMONIA"
    summary = read_summary(tiny_run_dir)
    assert card.validation_metrics == summary.validation_metrics
    assert card.majority_baseline["auc"] == pytest.approx(0.5)
    # Temperature scaling is folded into the graph and recorded; the threshold was set after it.
    assert card.calibration is not None and card.calibration == summary.calibration
    assert card.calibration.validation_cross_entropy_after <= card.calibration.validation_cross_entropy_before
    assert card.decision_threshold.target_sensitivity == 0.95
    assert (card.decision_threshold.validation_sensitivity or 0) >= 0.95
    splits = card.training_data.splits
    assert splits["train"].images + splits["validation"].images == 48
    assert json.loads((tiny_model_dir / CARD_FILENAME).read_text())["created_at"]
    assert tiny_model_dir.parts[-2:] == ("cxr-pneumonia", "1")


@pytest.mark.slow
def test_default_backbone_with_imagenet_weights_at_full_size(tmp_path: Path) -> None:
    model = create_model("efficientnet_lite0", num_classes=2, weights="imagenet").model.eval()
    path = tmp_path / "model.onnx"
    export_onnx(model, 224, path)
    images = torch.rand(2, 1, 224, 224)
    probabilities, cam = _session(path).run(None, {"image": images.numpy()})
    with torch.no_grad():
        expected = torch.softmax(model(images), dim=1).numpy()
    assert np.max(np.abs(probabilities - expected)) <= PARITY_TOLERANCE
    assert cam.shape == (2, 2, 7, 7)
    assert assert_cam_matches_grad_cam_package(model, cam, images) >= 2


def test_an_exported_version_is_readable_by_the_serving_user(tiny_model_dir: Path) -> None:
    # The service may run as another uid than the exporter (a container reading a training job's
    # store); the staging folder starts 0700, so the export must open it up.
    assert stat.S_IMODE(tiny_model_dir.stat().st_mode) == 0o755
