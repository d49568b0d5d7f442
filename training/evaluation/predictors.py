"""One interface over the two ways a model is run: the PyTorch checkpoint and the exported ONNX file.

Both run the same computation - ``ExportGraph`` is the graph that is exported - so an evaluation of
either gives the same numbers, and a difference between them is an export fault, not a model one.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch

from service.contract import ModelCard
from service.contract.model_card import CAM_OUTPUT, CARD_FILENAME, ONNX_FILENAME, PROBABILITIES_OUTPUT
from training.backbones.factory import Classifier
from training.evaluation.complexity import (
    FLOPS_METHOD,
    forward_flops,
    onnx_parameter_count,
    torch_parameter_count,
)
from training.evaluation.results import Complexity, ModelIdentity
from training.export.gradcam_graph import ExportGraph

Films = npt.NDArray[np.float32]
"""``[N, 1, H, W]`` model inputs in [0, 1], as ``service.contract.load_model_input`` makes them."""

DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class Predictions:
    probabilities: npt.NDArray[np.float64]  # [N, C]
    cams: npt.NDArray[np.float32]  # [N, C, h, w], raw Grad-CAM of every class
    seconds_per_image: float
    batch_size: int


class Predictor(Protocol):
    @property
    def identity(self) -> ModelIdentity: ...

    @property
    def runtime(self) -> str: ...

    def predict(self, inputs: Films, batch_size: int = DEFAULT_BATCH_SIZE) -> Predictions: ...

    def complexity(self, height: int, width: int) -> Complexity: ...


BatchFunction = Callable[[Films], tuple[npt.NDArray[np.floating], npt.NDArray[np.floating]]]


def run_timed(run_batch: BatchFunction, inputs: Films, batch_size: int) -> Predictions:
    """``run_batch`` over ``inputs`` in batches, timed after one untimed warm-up batch.

    The warm-up absorbs one-off costs (allocator growth, lazy kernel selection, thread-pool start)
    that would otherwise dominate a small split; every film is then timed, the first batch included.
    """
    _check_films(inputs)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    run_batch(inputs[:batch_size])
    started = time.perf_counter()
    outputs = [run_batch(inputs[start : start + batch_size]) for start in range(0, len(inputs), batch_size)]
    elapsed = time.perf_counter() - started
    return Predictions(
        probabilities=np.concatenate([p for p, _ in outputs]).astype(np.float64),
        cams=np.concatenate([c for _, c in outputs]).astype(np.float32),
        seconds_per_image=elapsed / len(inputs),
        batch_size=batch_size,
    )


def _check_films(inputs: Films) -> None:
    if inputs.ndim != 4 or inputs.shape[1] != 1 or len(inputs) == 0:
        raise ValueError(f"expected films [N >= 1, 1, H, W], got shape {inputs.shape}")
    if inputs.dtype != np.float32:
        raise ValueError(f"expected float32 films, got {inputs.dtype}")


class TorchPredictor:
    """The checkpoint's ``ExportGraph`` (probabilities and in-graph Grad-CAM) in PyTorch."""

    def __init__(
        self,
        model: Classifier,
        temperature: float = 1.0,
        *,
        device: str | torch.device = "cpu",
        source: str = "in-memory PyTorch model",
        architecture: str | None = None,
    ) -> None:
        self.model = model.eval()
        self.device = torch.device(device)
        self.graph = ExportGraph(model, temperature).to(self.device).eval()
        self._identity = ModelIdentity(
            kind="pytorch", source=source, architecture=architecture, temperature=float(temperature)
        )

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    @property
    def runtime(self) -> str:
        threads = f", {torch.get_num_threads()} threads" if self.device.type == "cpu" else ""
        return f"PyTorch {torch.__version__} on {self.device}{threads}"

    def _run(self, batch: Films) -> tuple[npt.NDArray[np.floating], npt.NDArray[np.floating]]:
        with torch.no_grad():
            probabilities, cam = self.graph(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # kernels are asynchronous: time them, not their launch
        return probabilities.cpu().numpy(), cam.cpu().numpy()

    def predict(self, inputs: Films, batch_size: int = DEFAULT_BATCH_SIZE) -> Predictions:
        return run_timed(self._run, inputs, batch_size)

    def complexity(self, height: int, width: int) -> Complexity:
        return Complexity(
            parameters=torch_parameter_count(self.model),
            parameters_counted="PyTorch parameters (sum of numel; buffers such as batch-norm statistics "
            "excluded)",
            flops_per_image=forward_flops(self.model, height, width),
            flops_note=FLOPS_METHOD,
        )


class OnnxPredictor:
    """``<model_dir>/model.onnx`` in an ONNX Runtime CPU session, as the service runs it.

    ONNX Runtime cannot count FLOPs; ``flops_reference``, the PyTorch model the file was exported
    from, lets ``complexity`` count them there.
    """

    def __init__(
        self, model_dir: Path, *, flops_reference: Classifier | None = None, threads: int = 0
    ) -> None:
        self.model_dir = model_dir
        self.path = model_dir / ONNX_FILENAME
        self.card = ModelCard.model_validate_json((model_dir / CARD_FILENAME).read_text())
        self.flops_reference = flops_reference
        self.threads = threads
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        calibration = self.card.calibration
        self._identity = ModelIdentity(
            kind="onnx",
            source=str(self.path),
            architecture=self.card.architecture,
            name=self.card.name,
            version=self.card.version,
            temperature=None if calibration is None else float(calibration.temperature),
            onnx_sha256=self.card.onnx_sha256,
        )

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    @property
    def runtime(self) -> str:
        threads = self.threads or "default"
        return f"ONNX Runtime {ort.__version__} CPUExecutionProvider, {threads} intra-op threads"

    def _run(self, batch: Films) -> tuple[npt.NDArray[np.floating], npt.NDArray[np.floating]]:
        name = self.card.pixel_contract.input_name
        probabilities, cam = self.session.run([PROBABILITIES_OUTPUT, CAM_OUTPUT], {name: batch})
        return np.asarray(probabilities), np.asarray(cam)

    def predict(self, inputs: Films, batch_size: int = DEFAULT_BATCH_SIZE) -> Predictions:
        contract = self.card.pixel_contract
        if inputs.shape[2:] != (contract.height, contract.width):
            raise ValueError(
                f"films are {inputs.shape[2]}x{inputs.shape[3]}, the model card asks for "
                f"{contract.height}x{contract.width}"
            )
        return run_timed(self._run, np.ascontiguousarray(inputs), batch_size)

    def complexity(self, height: int, width: int) -> Complexity:
        counted = "ONNX initializer elements (weights plus any unfolded normalisation constants)"
        if self.flops_reference is None:
            return Complexity(
                parameters=onnx_parameter_count(self.path),
                parameters_counted=counted,
                flops_per_image=None,
                flops_note="unknown: FLOPs are counted on the PyTorch model, and none was given for this "
                "ONNX file (evaluate_run passes the run's checkpoint)",
            )
        return Complexity(
            parameters=onnx_parameter_count(self.path),
            parameters_counted=counted,
            flops_per_image=forward_flops(self.flops_reference, height, width),
            flops_note=f"{FLOPS_METHOD}; counted on the PyTorch model this file was exported from",
        )
