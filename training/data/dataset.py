"""Tensors for training: every file goes through ``service.contract.load_model_input``."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from service.contract import load_model_input
from training.data.scan import Sample


def load_input(path: Path, height: int, width: int) -> np.ndarray:
    """One file -> the model input the service would compute from the same bytes."""
    tensor, _ = load_model_input(path.read_bytes(), height, width)
    return tensor


class FilmDataset(Dataset[tuple[torch.Tensor, int]]):
    """Preprocessed films held in memory (5,216 Kermany films at 224 px are ~1 GB of float32),
    because decoding each epoch would cost more than training on two cores.
    Augmentation is applied per batch by ``training.augment``, never here.
    """

    def __init__(self, samples: Sequence[Sample], height: int, width: int) -> None:
        self.samples = list(samples)
        self.inputs = torch.from_numpy(np.stack([load_input(s.path, height, width) for s in self.samples]))
        self.labels = torch.tensor([s.label for s in self.samples], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.inputs[index], int(self.labels[index])
