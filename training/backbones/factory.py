"""One factory for every backbone, each split the same way: ``features`` (image -> last conv map)
and ``head`` (map -> logits), so export with in-graph Grad-CAM is written once for all of them.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from training.backbones.weights import Weights, WeightsSource, resolve_weights


class InputAdapter(nn.Module):
    """Maps the contract's one-channel [0, 1] film to what the backbone was trained on.

    Part of the model (and so of the ONNX graph): no caller ever applies mean/std itself.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self, channels: int, mean: float | tuple[float, ...], std: float | tuple[float, ...]
    ) -> None:
        super().__init__()
        self.channels = channels
        # A scalar keeps the original buffer shape (older checkpoints load); a per-channel tuple, as
        # timm's ImageNet configs give, is applied after the grey film is copied to every channel.
        self.register_buffer("mean", _channel_tensor(mean))
        self.register_buffer("std", _channel_tensor(std))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.channels != 1:
            image = image.expand(-1, self.channels, -1, -1)
        return (image - self.mean) / self.std


def _channel_tensor(value: float | tuple[float, ...]) -> torch.Tensor:
    if isinstance(value, tuple):
        return torch.tensor(value).reshape(-1, 1, 1)
    return torch.tensor(value)


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

    def blocks(self) -> list[nn.Module]:
        """The trainable stages from input to output, for "fine-tune the last N blocks" schedules."""
        raise NotImplementedError


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
    """timm EfficientNet-family ``forward_features`` (stem, blocks, head conv), tapped after one block.

    Also MobileNetV2: timm builds it with the same generator (``conv_stem``, ``blocks``, ``conv_head``).
    """

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

    def blocks(self) -> list[nn.Module]:
        body = self.body
        stem, head = nn.ModuleList([body.conv_stem, body.bn1]), nn.ModuleList([body.conv_head, body.bn2])
        return [stem, *body.blocks, head]


class _StagedFeatures(TappedFeatures):
    """Runs a timm model's feature stages (its named children, in order) up to the last conv map.

    ``body`` keeps the timm module tree (its classifier reset to Identity), so ``features.body.<timm
    key>`` is every parameter's name whatever the tap is; ``tap`` names the stage whose output is the
    mid-level map.
    """

    def __init__(self, body: nn.Module, stages: list[str], tap: str) -> None:
        super().__init__()
        if tap not in stages:
            raise ValueError(f"tap {tap!r} is not one of the stages {stages}")
        self.body = body
        self.stages = stages
        self.tap = tap

    def forward_with_tap(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mid = x
        for name in self.stages:
            x = getattr(self.body, name)(x)
            if name == self.tap:
                mid = x
        return mid, x

    def blocks(self) -> list[nn.Module]:
        stages = [getattr(self.body, name) for name in self.stages]
        return [stage for stage in stages if any(True for _ in stage.parameters())]


class _TappedSequential(nn.Sequential, TappedFeatures):
    """A plain Sequential (same state-dict keys) whose first stage's output is the tap."""

    def forward_with_tap(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stages = list(self)
        mid = stages[0](x)
        out = mid
        for stage in stages[1:]:
            out = stage(out)
        return mid, out

    def blocks(self) -> list[nn.Module]:
        return list(self)


def _timm_body(arch: str, weights: Weights) -> tuple[Any, WeightsSource]:
    """timm's ``arch`` with random init, then the resolved weights loaded strictly under timm's keys.

    Loaded before the classifier is reset, so a local file is simply ``timm.create_model(arch)
    .state_dict()`` as timm saves it (1000-class head included); any missing or extra key fails loudly.
    """
    import timm

    body: Any = timm.create_model(arch, pretrained=False)  # timm's optional API is untyped
    source = resolve_weights(arch, weights)
    if source.state_dict is not None:
        body.load_state_dict(source.state_dict)
    return body, source


def _imagenet_adapter(body: Any) -> InputAdapter:
    """The normalisation the timm weights were trained with, from timm's own config for ``arch``."""
    config = body.pretrained_cfg
    return InputAdapter(channels=3, mean=tuple(config["mean"]), std=tuple(config["std"]))


def _pooled_linear_head(width: int, num_classes: int, dropout: float = 0.2) -> nn.Sequential:
    return nn.Sequential(GlobalAvgPool(), nn.Dropout(dropout), nn.Linear(width, num_classes))


def _efficientnet_lite(variant: str) -> Callable[[int, Weights], BuiltModel]:
    def build(num_classes: int, weights: Weights) -> BuiltModel:
        body, source = _timm_body(variant, weights)
        body.reset_classifier(0)
        head = _pooled_linear_head(int(body.num_features), num_classes)
        # TF EfficientNet-Lite checkpoints expect (x*255 - 127) / 128, i.e. mean 0.498, std 0.502.
        adapter = InputAdapter(channels=3, mean=127.0 / 255.0, std=128.0 / 255.0)
        # Block 4 (of 7) ends the 14x14, 112-channel stage: mid-level texture for the OOD score.
        return BuiltModel(Classifier(adapter, _TimmFeatures(body, tap_block=4), head), source)

    return build


def _efficientnet_family(arch: str, tap_block: int) -> Callable[[int, Weights], BuiltModel]:
    """EfficientNet-B0 and MobileNetV2 (timm ImageNet normalisation, unlike the TF Lite weights)."""

    def build(num_classes: int, weights: Weights) -> BuiltModel:
        body, source = _timm_body(arch, weights)
        body.reset_classifier(0)
        head = _pooled_linear_head(int(body.num_features), num_classes)
        features = _TimmFeatures(body, tap_block=tap_block)
        return BuiltModel(Classifier(_imagenet_adapter(body), features, head), source)

    return build


def _staged(arch: str, stages: list[str], tap: str) -> Callable[[int, Weights], BuiltModel]:
    """ResNet, DenseNet, InceptionV3: timm stages in order, then pooled-linear head."""

    def build(num_classes: int, weights: Weights) -> BuiltModel:
        body, source = _timm_body(arch, weights)
        body.reset_classifier(0)  # fc -> Identity: no 1000-class weights left in our state dict
        head = _pooled_linear_head(int(body.num_features), num_classes)
        features = _StagedFeatures(body, stages, tap)
        return BuiltModel(Classifier(_imagenet_adapter(body), features, head), source)

    return build


_RESNET_STAGES = ["conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4"]
# InceptionV3 without AuxLogits (timm leaves it out by default): stem, Mixed 5 (35x35 at 299 px),
# Mixed 6 (17x17), Mixed 7 (8x8).
_INCEPTION_STAGES = [
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Pool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "Pool2",
    "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
    "Mixed_7a", "Mixed_7b", "Mixed_7c",
]  # fmt: skip


def _densenet121(num_classes: int, weights: Weights) -> BuiltModel:
    """timm's ``features`` Sequential (ends with norm5 + ReLU); tapped after transition2 (28x28 at
    224 px, 256 channels)."""
    body, source = _timm_body("densenet121", weights)
    body.reset_classifier(0)
    stages = [name for name, _ in body.features.named_children()]
    features = _StagedFeatures(body.features, stages, tap="transition2")
    head = _pooled_linear_head(int(body.num_features), num_classes)
    return BuiltModel(Classifier(_imagenet_adapter(body), features, head), source)


def _vgg16(num_classes: int, weights: Weights) -> BuiltModel:
    """VGG16's 13 conv layers (timm's ``features``, ending with the fifth max-pool), then the classic
    hidden-dense head Linear-ReLU-Dropout-Linear-ReLU-Dropout-Linear (4096 wide, dropout 0.5), but
    on globally average-pooled features rather than the flattened 7x7 map.

    Why pooled: the flattened head ties the model to 224 px (25,088 inputs) while the config may ask
    for any size. So timm's fc6/fc7 (``pre_logits``, 7x7 convs) cannot be reused: from any weights
    file only the conv layers are kept and the dense head starts random (said in the description).
    """
    body, source = _timm_body("vgg16", weights)
    convs: nn.Sequential = body.features
    # Tap after the third max-pool (index 16): 256 channels at 1/8 of the input, mid-level texture.
    features = _StagedFeatures(convs, [name for name, _ in convs.named_children()], tap="16")
    head = _pooled_mlp_head(512, 4096, 0.5, num_classes)  # 512: the fifth conv block's channels
    if source.state_dict is not None:
        note = "conv layers only; dense head randomly initialised"
        source = WeightsSource(f"{source.description} ({note})", source.state_dict)
    return BuiltModel(Classifier(_imagenet_adapter(body), features, head), source)


def _pooled_mlp_head(inputs: int, hidden: int, dropout: float, num_classes: int) -> nn.Sequential:
    """Global average pool, then two hidden layers (ReLU, dropout) and the class logits: VGG's head and
    the MLP's, in the layer order the in-graph Grad-CAM walks back through."""
    return nn.Sequential(
        GlobalAvgPool(),
        nn.Linear(inputs, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )


class _GridFeatures(TappedFeatures):
    """An MLP has no convolutional map, so its Grad-CAM "feature map" is the film itself.

    The film is average-pooled to a ``grid x grid`` thumbnail, and cell ``k`` is placed alone in
    channel ``k`` of a ``[grid*grid, grid, grid]`` map (value ``grid**2 * x_k`` at cell ``k``, zero
    elsewhere). Global average pooling of that map gives back exactly the thumbnail, which the
    MLP head reads; and Grad-CAM on it reduces to ``ReLU(d y_c / d x_k * x_k)`` at cell ``k``:
    gradient x input over the coarse grid, a saliency over the film. No parameters: the MLP is the
    head. The tap (OOD mid-level map) is a coarser ``grid/2`` thumbnail as channels of a 1x1 map;
    the MLP has no mid-level features, so this only adds a blurrier view of the layout.
    """

    placement: torch.Tensor

    def __init__(self, grid: int) -> None:
        super().__init__()
        self.grid = grid
        eye = torch.eye(grid * grid).reshape(grid * grid, grid, grid) * float(grid * grid)
        # Not persistent: a constant of the architecture, not a weight, and out of the state dict.
        self.register_buffer("placement", eye, persistent=False)

    def forward_with_tap(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cells = F.adaptive_avg_pool2d(x, self.grid).flatten(1)  # [N, grid*grid]
        fmap = cells[:, :, None, None] * self.placement.unsqueeze(0)
        mid = F.adaptive_avg_pool2d(x, self.grid // 2).flatten(1)[:, :, None, None]
        return mid, fmap

    def blocks(self) -> list[nn.Module]:
        return []  # no parameters: the MLP is all head


def _mlp(num_classes: int, weights: Weights) -> BuiltModel:
    """A plain multilayer perceptron on a 16x16 thumbnail of the film (see ``_GridFeatures``)."""
    grid, hidden = 16, 256
    source = resolve_weights("mlp", weights)
    head = _pooled_mlp_head(grid * grid, hidden, 0.3, num_classes)
    model = Classifier(InputAdapter(channels=1, mean=0.5, std=0.25), _GridFeatures(grid), head)
    if source.state_dict is not None:
        model.load_state_dict(source.state_dict)
    return BuiltModel(model, source)


def _baseline_cnn(num_classes: int, weights: Weights) -> BuiltModel:
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


BACKBONES: dict[str, Callable[[int, Weights], BuiltModel]] = {
    "efficientnet_lite0": _efficientnet_lite("efficientnet_lite0"),
    "efficientnet_lite1": _efficientnet_lite("efficientnet_lite1"),
    "efficientnet_lite2": _efficientnet_lite("efficientnet_lite2"),
    # Block 4 ends the 14x14 stage at 224 px in both (112 channels in B0, 96 in MobileNetV2).
    "efficientnet_b0": _efficientnet_family("efficientnet_b0", tap_block=4),
    "mobilenetv2_100": _efficientnet_family("mobilenetv2_100", tap_block=4),
    # Tap after layer2: 1/8 of the input, 128 (ResNet18) or 512 (ResNet50) channels.
    "resnet18": _staged("resnet18", _RESNET_STAGES, tap="layer2"),
    "resnet50": _staged("resnet50", _RESNET_STAGES, tap="layer2"),
    # Natural input 299 px (8x8 last map); works from 75 px, and from 107 px the last map is wider
    # than 1x1, which Grad-CAM needs to say anything spatial. Tap after Mixed_5d (288 channels).
    "inception_v3": _staged("inception_v3", _INCEPTION_STAGES, tap="Mixed_5d"),
    "densenet121": _densenet121,
    "vgg16": _vgg16,
    "mlp": _mlp,
    "baseline_cnn": _baseline_cnn,
}

# Smallest input side at which a backbone's last map is at least 2x2 (so Grad-CAM is spatial); the
# config refuses a smaller image_size and the tests run there. Unlisted backbones work from 64 px.
# InceptionV3 is recommended at its natural 299 px (8x8 last map, the size its ImageNet weights saw).
MIN_IMAGE_SIZE: dict[str, int] = {"inception_v3": 107}


def create_model(name: str, num_classes: int, weights: Weights = "imagenet") -> BuiltModel:
    """Build backbone ``name`` with a ``num_classes`` head; ``weights``: imagenet | none | <path>."""
    try:
        builder = BACKBONES[name]
    except KeyError:
        raise ValueError(f"Unknown backbone {name!r}; available: {', '.join(sorted(BACKBONES))}") from None
    return builder(num_classes, weights)
