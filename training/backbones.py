"""One factory for every backbone, each split the same way: ``features`` (image -> last conv map)
and ``head`` (map -> logits), so export with in-graph Grad-CAM is written once for all of them.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from training.weights import WeightsSource, resolve_weights


class InputAdapter(nn.Module):
    """Maps the contract's one-channel [0, 1] film to what the backbone was trained on.

    Part of the model (and so of the ONNX graph): no caller ever applies mean/std itself.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, channels: int, mean: float, std: float) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        normalised = (image - self.mean) / self.std
        return normalised.expand(-1, self.channels, -1, -1) if self.channels != 1 else normalised


class GlobalAvgPool(nn.Module):
    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return fmap.mean(dim=(2, 3))


class TappedFeatures(nn.Module):
    """Image -> last convolutional map, and on request a mid-level map too (for the OOD score).

    The tap reads modules already in the network, so state-dict keys do not depend on it.
    """

    def forward_with_tap(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_tap(x)[1]


class Classifier(nn.Module):
    """``forward = head(features(adapter(image)))``; Grad-CAM's target layer is ``features``."""

    def __init__(self, adapter: InputAdapter, features: TappedFeatures, head: nn.Sequential) -> None:
        super().__init__()
        self.adapter = adapter
        self.features = features
        self.head = head

    def forward_features(self, image: torch.Tensor) -> torch.Tensor:
        fmap: torch.Tensor = self.features(self.adapter(image))
        return fmap

    def forward_features_with_tap(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mid-level map, last convolutional map)."""
        return self.features.forward_with_tap(self.adapter(image))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.forward_features(image))
        return logits


@dataclass(frozen=True)
class BuiltModel:
    model: Classifier
    weights: WeightsSource


class _TimmFeatures(TappedFeatures):
    """timm EfficientNet's ``forward_features`` (stem, blocks, head conv), tapped after one block."""

    def __init__(self, body: Any, tap_block: int) -> None:
        super().__init__()
        self.body = body
        self.tap_block = tap_block

    def forward_with_tap(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        body = self.body
        h = body.bn1(body.conv_stem(x))
        mid = h
        for index, block in enumerate(body.blocks):
            h = block(h)
            if index == self.tap_block:
                mid = h
        return mid, body.bn2(body.conv_head(h))


class _TappedSequential(nn.Sequential, TappedFeatures):
    """A plain Sequential (same state-dict keys) whose first stage's output is the tap."""

    def forward_with_tap(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stages = list(self)
        mid = stages[0](x)
        out = mid
        for stage in stages[1:]:
            out = stage(out)
        return mid, out


def _efficientnet_lite(variant: str) -> Callable[[int, str], BuiltModel]:
    def build(num_classes: int, weights: str) -> BuiltModel:
        import timm

        body: Any = timm.create_model(variant, pretrained=False)  # timm's optional API is untyped
        source = resolve_weights(variant, weights)
        if source.state_dict is not None:
            body.load_state_dict(source.state_dict)
        body.reset_classifier(0)
        width = int(body.num_features)
        head = nn.Sequential(GlobalAvgPool(), nn.Dropout(0.2), nn.Linear(width, num_classes))
        # TF EfficientNet-Lite checkpoints expect (x*255 - 127) / 128, i.e. mean 0.498, std 0.502.
        adapter = InputAdapter(channels=3, mean=127.0 / 255.0, std=128.0 / 255.0)
        # Block 4 (of 7) ends the 14x14, 112-channel stage: mid-level texture for the OOD score.
        return BuiltModel(Classifier(adapter, _TimmFeatures(body, tap_block=4), head), source)

    return build


def _baseline_cnn(num_classes: int, weights: str) -> BuiltModel:
    """The studies' baseline: two conv blocks, then a dense layer (here after global pooling)."""

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )

    source = resolve_weights("baseline_cnn", weights)
    features = _TappedSequential(block(1, 32), block(32, 64))
    head = nn.Sequential(
        GlobalAvgPool(), nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, num_classes)
    )
    model = Classifier(InputAdapter(channels=1, mean=0.5, std=0.25), features, head)
    if source.state_dict is not None:
        model.load_state_dict(source.state_dict)
    return BuiltModel(model, source)


BACKBONES: dict[str, Callable[[int, str], BuiltModel]] = {
    "efficientnet_lite0": _efficientnet_lite("efficientnet_lite0"),
    "baseline_cnn": _baseline_cnn,
}


def create_model(name: str, num_classes: int, weights: str = "imagenet") -> BuiltModel:
    """Build backbone ``name`` with a ``num_classes`` head; ``weights``: imagenet | none | <path>."""
    try:
        builder = BACKBONES[name]
    except KeyError:
        raise ValueError(f"Unknown backbone {name!r}; available: {', '.join(sorted(BACKBONES))}") from None
    return builder(num_classes, weights)
