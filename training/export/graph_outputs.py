"""Every output of an exported graph on preprocessed films, through ONNX Runtime on the CPU.

What quantisation compares (float vs int8) and what publishing compares (candidate vs active
version) is measured here, on the graph file itself, not on the PyTorch model it came from.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from service.contract import ModelCard

FloatArray = npt.NDArray[np.float32]
_BATCH = 32


@dataclass(frozen=True)
class GraphOutputs:
    probabilities: FloatArray
    cam: FloatArray
    ood: FloatArray | None


def run_graph(path: Path, card: ModelCard, films: FloatArray, threads: int = 0) -> GraphOutputs:
    """Every output of the graph at ``path`` on ``films`` ``[N, 1, H, W]``, in batches, on the CPU."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = ["probabilities", "cam"] + ([card.ood.output_name] if card.ood is not None else [])
    parts: list[list[FloatArray]] = [[] for _ in names]
    for start in range(0, len(films), _BATCH):
        outputs = session.run(names, {card.pixel_contract.input_name: films[start : start + _BATCH]})
        for part, output in zip(parts, outputs, strict=True):
            part.append(np.asarray(output, dtype=np.float32))
    joined = [np.concatenate(part) for part in parts]
    return GraphOutputs(joined[0], joined[1], joined[2] if card.ood is not None else None)
