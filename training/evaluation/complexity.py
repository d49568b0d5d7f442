"""Model size and compute: parameters and FLOPs per image, for a PyTorch model or an ONNX file."""

from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

FLOPS_METHOD = (
    "torch.utils.flop_counter on one image through the classifier's forward pass: convolutions and "
    "matrix products only, a multiply-add counted as 2 FLOPs (the in-graph Grad-CAM adds a few more)"
)


def torch_parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def onnx_parameter_count(path: Path) -> int:
    """Elements of every initializer: the trained weights as exported, which also holds what PyTorch
    keeps as buffers (normalisation statistics, the input adapter's mean and std, the temperature)
    unless the exporter folded them, so it need not equal the PyTorch count."""
    graph = onnx.load(str(path), load_external_data=False).graph
    return sum(int(np.prod(initializer.dims, dtype=np.int64)) for initializer in graph.initializer)


def forward_flops(model: nn.Module, height: int, width: int) -> int:
    """FLOPs of one ``[1, 1, height, width]`` film through ``model`` (see ``FLOPS_METHOD``)."""
    device = next(model.parameters(), torch.zeros(0)).device
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 1, height, width, device=device))
    return int(counter.get_total_flops())
