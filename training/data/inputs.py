"""Films -> model inputs through the service's preprocessing contract: a file by
``service.contract.load_model_input``, an .npz row by ``decode_array`` + ``to_model_input``.

Torch-free, so commands that need no torch (``publish``) read films through the same code.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from service.contract import decode_array, load_model_input, to_model_input
from training.data.npz import NpzRows
from training.data.scan import Sample


def load_input(path: Path, height: int, width: int) -> np.ndarray:
    """One file -> the model input the service would compute from the same bytes."""
    tensor, _ = load_model_input(path.read_bytes(), height, width)
    return tensor


def load_sample(sample: Sample, rows: NpzRows, height: int, width: int) -> np.ndarray:
    """One film, a file or a row of an .npz file held open by ``rows``."""
    if sample.item is None:
        return load_input(sample.path, height, width)
    return to_model_input(decode_array(rows.row(sample.path, sample.item)), height, width)


def load_inputs(samples: Sequence[Sample], height: int, width: int) -> np.ndarray:
    """``[N, 1, height, width]`` float32 model inputs; each .npz file is read once for all its rows."""
    with NpzRows() as rows:
        tensors = [load_sample(s, rows, height, width) for s in samples]
    if not tensors:
        return np.zeros((0, 1, height, width), dtype=np.float32)
    return np.stack(tensors)
