from pathlib import Path
from typing import Any

import pytest
import torch

from training.backbones.factory import create_model
from training.backbones.weights import WeightsRequest, WeightsUnavailableError, resolve_weights


def test_efficientnet_lite0_imagenet_weights_come_from_the_package() -> None:
    built = create_model("efficientnet_lite0", num_classes=2, weights="imagenet")
    assert "ImageNet" in built.weights.description
    assert built.weights.state_dict is not None
    features: Any = built.model.features  # the timm body is untyped
    stem = features.body.conv_stem.weight
    assert torch.equal(stem, built.weights.state_dict["conv_stem.weight"])


def test_no_silent_random_init_when_no_weights_are_available() -> None:
    with pytest.raises(WeightsUnavailableError, match="weights='none'"):
        resolve_weights("baseline_cnn", "imagenet")
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        resolve_weights("efficientnet_lite0", "/nonexistent/weights.pt")
    assert "explicitly requested" in resolve_weights("baseline_cnn", "none").description


def test_weights_from_a_local_state_dict_file(tmp_path: Path) -> None:
    source = create_model("baseline_cnn", num_classes=2, weights="none").model
    path = tmp_path / "cnn.pt"
    torch.save(source.state_dict(), path)
    loaded = create_model("baseline_cnn", num_classes=2, weights=str(path))
    assert str(path) in loaded.weights.description
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value)


def test_unknown_backbone_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        create_model("resnet9000", num_classes=2)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_imagenet_weights_from_the_named_cache_folder(tmp_path: Path, suffix: str) -> None:
    import timm
    from safetensors.torch import save_file

    reference = timm.create_model("resnet18", pretrained=False).state_dict()
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in reference.items()}, str(path))
    else:
        torch.save(reference, path)
    built = create_model("resnet18", 2, WeightsRequest("imagenet", cache_dir=tmp_path))
    assert built.weights.description == f"ImageNet, from cache file {path}"
    features: Any = built.model.features
    assert torch.equal(features.body.conv1.weight, reference["conv1.weight"])


def test_missing_cache_entry_says_where_it_looked_and_that_downloads_are_off(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match=rf"no resnet50.* in {tmp_path}.*downloads not allowed"):
        resolve_weights("resnet50", WeightsRequest("imagenet", cache_dir=tmp_path))


def test_a_permitted_download_that_cannot_happen_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as on a machine without the hub, whatever this one has
    with pytest.raises(WeightsUnavailableError, match="Downloading ImageNet weights for resnet18 failed"):
        resolve_weights("resnet18", WeightsRequest("imagenet", allow_download=True))
