"""Tensors for training: every film goes through the service's preprocessing contract, a file by
``service.contract.load_model_input``, an .npz row by ``decode_array`` + ``to_model_input``."""

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from training.data.inputs import load_inputs
from training.data.scan import Sample


class FilmDataset(Dataset[tuple[torch.Tensor, int]]):
    """Preprocessed films held in memory (5,216 Kermany films at 224 px are ~1 GB of float32),
    because decoding each epoch would cost more than training on two cores.
    Augmentation is applied per batch by ``training.data.augment``, never here.
    """

    def __init__(self, samples: Sequence[Sample], height: int, width: int) -> None:
        self.samples = list(samples)
        self.inputs = torch.from_numpy(load_inputs(self.samples, height, width))
        self.labels = torch.tensor([s.label for s in self.samples], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.inputs[index], int(self.labels[index])
