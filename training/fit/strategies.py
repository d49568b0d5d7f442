"""The knobs the studies compared: what trains (freeze schedules), how classes are balanced
(loss weights or re-sampling), and the optimiser with its L1/L2 penalties."""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import Sampler

from training.backbones.factory import Classifier
from training.config import TrainConfig
from training.stats.metrics import IntArray


@dataclass(frozen=True)
class Phase:
    name: str
    epochs: int
    lr: float
    trainable_blocks: int | None  # feature blocks trained, counted from the output end; None = all


def phases(config: TrainConfig) -> list[Phase]:
    """Feature extraction (head only), then fine-tuning of the last N blocks or of everything.

    ``finetune_epochs: 0`` is pure feature extraction; ``finetune_blocks: N`` a partial fine-tune.
    """
    planned = [
        Phase("head", config.head_epochs, config.head_lr, trainable_blocks=0),
        Phase(
            "finetune", config.finetune_epochs, config.finetune_lr, trainable_blocks=config.finetune_blocks
        ),
    ]
    return [p for p in planned if p.epochs > 0]


def frozen_blocks(model: Classifier, phase: Phase) -> list[nn.Module]:
    blocks = model.features.blocks()
    if phase.trainable_blocks is None:
        return []
    return blocks[: max(len(blocks) - phase.trainable_blocks, 0)]


def set_phase(model: Classifier, phase: Phase) -> list[nn.Parameter]:
    """Mark what trains in this phase; returns the trainable parameters."""
    for parameter in model.parameters():
        parameter.requires_grad = True
    for block in frozen_blocks(model, phase):
        for parameter in block.parameters():
            parameter.requires_grad = False
    return [p for p in model.parameters() if p.requires_grad]


def train_mode(model: Classifier, phase: Phase) -> None:
    model.train()
    for block in frozen_blocks(model, phase):
        block.eval()  # a frozen block keeps its BatchNorm statistics too


def class_weights(labels: IntArray, num_classes: int) -> torch.Tensor:
    """Inverse class frequency, scaled so a balanced set gets weight 1 everywhere."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = len(labels) / (num_classes * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32)


def loss_function(config: TrainConfig, labels: IntArray, num_classes: int) -> nn.CrossEntropyLoss:
    smoothing = config.label_smoothing
    if config.imbalance == "class_weights":
        return nn.CrossEntropyLoss(weight=class_weights(labels, num_classes), label_smoothing=smoothing)
    return nn.CrossEntropyLoss(label_smoothing=smoothing)


class BalancedSampler(Sampler[int]):
    """Each epoch, every class contributes the same number of films, drawn afresh.

    ``oversample``: every class is drawn up to the largest class's count (minority films repeat).
    ``undersample``: every class is cut to the smallest class's count; a new subset each epoch, so
    over several epochs the majority class is still seen in full rather than thrown away once.
    """

    def __init__(self, labels: IntArray, mode: str, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if mode not in ("oversample", "undersample"):
            raise ValueError(f"unknown re-sampling mode {mode!r}")
        self.by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        sizes = [len(members) for members in self.by_class]
        self.per_class = max(sizes) if mode == "oversample" else min(sizes)
        self.mode = mode
        self.seed, self.epoch = seed, 0
        self.rank, self.world_size = rank, world_size

    def set_epoch(self, epoch: int) -> None:
        """Every process draws the same epoch from (seed, epoch), then takes its own share of it."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_class * len(self.by_class) // self.world_size

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1  # a loop that never calls set_epoch still gets a fresh draw each time
        drawn = [
            rng.choice(
                members, self.per_class, replace=self.mode == "oversample" and len(members) < self.per_class
            )
            for members in self.by_class
        ]
        order = np.concatenate(drawn)
        rng.shuffle(order)
        share = order[self.rank :: self.world_size][: len(self)]
        return iter(int(i) for i in share)


def make_optimizer(config: TrainConfig, parameters: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            parameters, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=True
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=config.weight_decay)


def l1_penalty(parameters: list[nn.Parameter], strength: float) -> torch.Tensor | None:
    """``strength * sum |w|`` over weight matrices and kernels; biases and norm scales are left alone,
    as with the studies' Keras ``kernel_regularizer``."""
    if strength == 0:
        return None
    weights = [p for p in parameters if p.ndim > 1]
    return strength * torch.stack([p.abs().sum() for p in weights]).sum()
