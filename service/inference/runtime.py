"""ONNX Runtime model loading and inference.

``ModelRuntime.load`` refuses to return unless the model directory is internally consistent (the
checks of ``service.store.verify``) and a warm-up run produces outputs of the declared shapes. A model
that passes is safe to serve; one that does not stops the process (or, on a hot reload, is refused
while the old model keeps serving) with a ``ModelLoadError`` that says what to fix. Nothing here
depends on HTTP, so the same checks can run from a shell (``verify_model_dir``).
"""

import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from service.contract import DecodedImage, DecodeLimits, ModelCard, load_model_input
from service.contract.model_card import CAM_OUTPUT, PROBABILITIES_OUTPUT
from service.inference.batching import BatchPolicy, MicroBatcher
from service.inference.decision import serving_threshold
from service.inference.providers import open_session, switch
from service.settings import Settings
from service.store.errors import ModelLoadError
from service.store.resolve import resolve_model_dir
from service.store.verify import check_graph, read_verified

logger = logging.getLogger(__name__)

_PROBABILITY_SUM_TOLERANCE = 1e-3


class InferenceError(RuntimeError):
    """ONNX Runtime failed on one film: a server fault for that request only, the session stays usable."""


class ModelOutputError(InferenceError):
    """The model produced outputs that cannot be reported (wrong shape, NaN...): a server fault."""


@dataclass(frozen=True)
class Inference:
    """One film's outputs: softmax over classes, and the raw Grad-CAM map of every class."""

    probabilities: npt.NDArray[np.float32]  # [C], finite, sums to 1
    cams: npt.NDArray[np.float32]  # [C, h, w], finite, non-negative
    inference_ms: float  # the session.run that computed it, shared by the films of its batch
    ood_score: float | None = None  # only for models whose card declares an OOD detector
    batch_size: int = 1  # films in that run (dynamic micro-batching)
    # When that run started and ended (time.perf_counter): a request subtracts its own submit time
    # and resume time to see how long it waited for its batch and for the event loop.
    run_started: float = 0.0
    run_ended: float = 0.0


class ModelRuntime:
    """A validated model: its card, its ONNX Runtime session, and the provider really in use."""

    def __init__(
        self,
        model_dir: Path,
        card: ModelCard,
        session: ort.InferenceSession,
        sha256: str,
        *,
        threshold_override: float | None = None,
        provider_fallback: str | None = None,
        batch_policy: BatchPolicy | None = None,
        io_binding: bool = False,
        pad_to: int | None = None,
    ) -> None:
        self.model_dir = model_dir
        self.card = card
        self.sha256 = sha256
        self._session = session
        self.provider: str = session.get_providers()[0]
        self.intra_op_threads = int(session.get_session_options().intra_op_num_threads)
        # Why the provider in use is not the GPU that CXR_EXECUTION_PROVIDER=auto asked for; None when
        # it is, or when the CPU was asked for. Reported by /readyz, /v1/models and /metrics.
        self.provider_fallback = provider_fallback
        self.threshold = serving_threshold(card, threshold_override)
        self._outputs = [PROBABILITIES_OUTPUT, CAM_OUTPUT] + ([card.ood.output_name] if card.ood else [])
        # On a GPU, I/O binding copies the batch to the device once and lets ORT allocate the outputs
        # where it computes them, instead of per-run staging in session.run.
        self.io_binding = io_binding
        # Fixed-shape runs: every batch is padded with blank films to this size and the padding's
        # outputs dropped. The CUDA provider re-plans on every change of input shape.
        self.pad_to = pad_to
        self._batcher: MicroBatcher[Inference] = MicroBatcher(self.infer_batch, batch_policy or BatchPolicy())
        self.lanes = self._batcher.policy.lanes

    @classmethod
    def load(cls, settings: Settings, version: str | None = None) -> "ModelRuntime":
        """Load and verify the configured model, or ``version`` of it from the store (hot reload)."""
        model_dir = resolve_model_dir(settings, version)
        files = read_verified(model_dir)
        card, onnx_path = files.card, files.onnx_path
        session, fallback, layout = open_session(files.model_bytes, settings, card, onnx_path)
        in_use = session.get_providers()[0]
        check_graph(session, card, onnx_path)
        runtime = cls(
            model_dir,
            card,
            session,
            files.sha256,
            threshold_override=settings.decision_threshold,
            provider_fallback=fallback,
            batch_policy=BatchPolicy(
                max_batch=settings.max_batch_size,
                max_wait_s=settings.batch_wait_ms / 1000.0,
                adaptive=settings.batch_window == "adaptive",
                lanes=layout.lanes,
            ),
            io_binding=switch(settings.io_binding, in_use),
            pad_to=settings.max_batch_size if switch(settings.pad_batches, in_use) else None,
        )
        runtime._warm_up(onnx_path)
        if settings.model_dir is None and card.name != settings.model_name:
            logger.warning(
                "model card name %r differs from CXR_MODEL_NAME %r", card.name, settings.model_name
            )
        logger.info(
            "model loaded",
            extra={
                "model_name": card.name,
                "model_version": card.version,
                "model_dir": str(model_dir),
                "onnx_sha256": files.sha256,
                "execution_provider": runtime.provider,
                "provider_fallback": fallback,
                "input_shape": [1, 1, card.pixel_contract.height, card.pixel_contract.width],
            },
        )
        return runtime

    def _warm_up(self, onnx_path: Path) -> None:
        """Runs on blank films, alone and as a full batch: allocates kernels for both and checks the
        real output shapes, so the first requests are not the slow ones."""
        contract = self.card.pixel_contract
        blank = np.zeros((1, contract.height, contract.width), dtype=np.float32)
        try:
            self.infer(blank)
            max_batch = self._batcher.policy.max_batch
            if max_batch > 1:
                for result in self.infer_batch(np.stack([blank] * max_batch)):
                    if isinstance(result, Exception):
                        raise result
        except InferenceError as exc:
            cause = f" ({type(exc.__cause__).__name__}: {exc.__cause__})" if exc.__cause__ else ""
            raise ModelLoadError(f"{onnx_path}: warm-up inference failed: {exc}{cause}") from exc

    @property
    def class_names(self) -> list[str]:
        return list(self.card.class_names)

    def prepare(
        self, data: bytes, max_pixels: int | None = None, limits: DecodeLimits | None = None
    ) -> tuple[npt.NDArray[np.float32], DecodedImage]:
        """Uploaded bytes -> this model's input, through the contract training uses for its datasets.
        ``limits`` (all decode limits) wins over ``max_pixels`` (the pixel cap, other limits default)."""
        if limits is None:
            limits = DecodeLimits() if max_pixels is None else DecodeLimits(max_pixels=max_pixels)
        contract = self.card.pixel_contract
        return load_model_input(data, contract.height, contract.width, limits)

    def infer(self, image: npt.NDArray[np.float32]) -> Inference:
        """Run one preprocessed film ``[1, H, W]`` now, on the calling thread, unbatched."""
        (result,) = self.infer_batch(image[np.newaxis])
        if isinstance(result, Exception):
            raise result
        return result

    def submit(self, image: npt.NDArray[np.float32]) -> "Future[Inference]":
        """Queue one preprocessed film ``[1, H, W]`` for the next micro-batch (service.inference.batching)."""
        return self._batcher.submit(image)

    def infer_batch(self, films: npt.NDArray[np.float32]) -> list["Inference | InferenceError"]:
        """Run films ``[N, 1, H, W]`` in one ``session.run``: one ``Inference`` per film, or the
        ``ModelOutputError`` of a film whose outputs fail their checks.

        Raises ``InferenceError`` when ONNX Runtime fails or the outputs have the wrong shape: the
        whole run is unusable, and the session stays usable. ORT sessions allow concurrent runs.
        """
        n = len(films)
        if self.pad_to is not None and n < self.pad_to:
            batch = np.zeros((self.pad_to, *films.shape[1:]), dtype=np.float32)
            batch[:n] = films  # one copy into the padded buffer
        else:
            batch = np.ascontiguousarray(films, dtype=np.float32)
        start = time.perf_counter()
        try:
            outputs = self._run_bound(batch) if self.io_binding else self._run(batch)
        except Exception as exc:  # ORT raises its own Fail/RuntimeException/InvalidArgument types
            raise InferenceError(f"ONNX Runtime run failed ({type(exc).__name__})") from exc
        ended = time.perf_counter()
        inference_ms = (ended - start) * 1000.0
        rows = len(batch)  # n, or more with padding: the shapes are checked on what ran, then cut to n
        probabilities = self._checked_shape(PROBABILITIES_OUTPUT, np.asarray(outputs[0]), rows, 2)[:n]
        cams = self._checked_shape(CAM_OUTPUT, np.asarray(outputs[1]), rows, 4)[:n]
        ood = (
            self._checked_shape("ood_score", np.asarray(outputs[2]), rows, 1)[:n]
            if len(outputs) > 2
            else None
        )
        results: list[Inference | InferenceError] = []
        for row in range(n):
            try:
                results.append(
                    Inference(
                        probabilities=self._checked_probabilities(probabilities[row]),
                        cams=_cleaned_cams(cams[row]),
                        inference_ms=inference_ms,
                        ood_score=None if ood is None else _checked_ood_score(ood[row]),
                        batch_size=n,
                        run_started=start,
                        run_ended=ended,
                    )
                )
            except ModelOutputError as exc:
                results.append(exc)
        return results

    def _run(self, batch: npt.NDArray[np.float32]) -> list[Any]:
        outputs: list[Any] = self._session.run(self._outputs, {self.card.pixel_contract.input_name: batch})
        return outputs

    def _run_bound(self, batch: npt.NDArray[np.float32]) -> list[Any]:
        binding = self._session.io_binding()
        binding.bind_cpu_input(self.card.pixel_contract.input_name, batch)
        for name in self._outputs:
            binding.bind_output(name, "cpu")
        self._session.run_with_iobinding(binding)
        outputs: list[Any] = binding.copy_outputs_to_cpu()
        return outputs

    def _checked_shape(self, name: str, values: npt.NDArray[Any], n: int, ndim: int) -> npt.NDArray[Any]:
        n_classes = len(self.card.class_names)
        expected = {2: f"({n}, {n_classes})", 4: f"({n}, {n_classes}, h, w)", 1: f"({n},)"}[ndim]
        ok = values.ndim == ndim and values.shape[0] == n
        if ndim > 1:
            ok = ok and values.shape[1] == n_classes
        if ndim == 4:
            ok = ok and min(values.shape[2:]) >= 1
        if not ok:
            raise ModelOutputError(f"{name} has shape {values.shape}, expected {expected}")
        return values

    def is_out_of_distribution(self, inference: Inference) -> bool:
        """True when the card has a detector and the film scores above its validated threshold."""
        detector = self.card.ood
        return (
            detector is not None
            and inference.ood_score is not None
            and inference.ood_score > detector.threshold
        )

    def triage_level(self, predicted_class: str) -> str | None:
        """``urgent`` when a binary model calls the positive class at its operating point, else routine."""
        if self.threshold is None:
            return None
        return "urgent" if predicted_class == self.threshold.positive_class else "routine"

    def _checked_probabilities(self, row: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        probabilities: npt.NDArray[np.float32] = row.astype(np.float32)
        if not np.all(np.isfinite(probabilities)) or np.any(probabilities < 0):
            raise ModelOutputError(f"{PROBABILITIES_OUTPUT} is not a probability vector")
        total = float(probabilities.sum())
        if abs(total - 1.0) > _PROBABILITY_SUM_TOLERANCE:
            raise ModelOutputError(f"{PROBABILITIES_OUTPUT} sums to {total:.4f}, not 1 (softmax?)")
        return probabilities

    def decide(self, probabilities: npt.NDArray[np.float32]) -> str:
        """``positive_class`` iff p(positive) >= threshold for a binary model with one, else argmax."""
        names = self.card.class_names
        threshold = self.threshold
        if threshold is not None:
            positive = names.index(threshold.positive_class)
            # Compared in float32, the dtype the model emits: a card value written as 0.9 must still
            # match a probability of float32(0.9), which is slightly below 0.9 as a float64.
            if np.float32(probabilities[positive]) >= np.float32(threshold.value):
                return names[positive]
            return names[1 - positive]
        return names[int(np.argmax(probabilities))]


def _checked_ood_score(score: npt.NDArray[Any]) -> float:
    if not np.isfinite(score):
        raise ModelOutputError("ood_score is not finite")
    return float(score)


def _cleaned_cams(cams: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    # A CAM is a display aid: non-finite or negative cells are drawn as "no evidence", not an error.
    finite = np.nan_to_num(cams.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    clipped: npt.NDArray[np.float32] = np.clip(finite, 0.0, None)
    return clipped


def verify_model_dir(model_dir: Path) -> ModelCard:
    """The card of ``model_dir`` if the service would serve it, after every start-up check on the CPU.

    Settings come from the argument alone: CXR_* variables in the calling shell (a threshold
    override, a watch interval) must not change what is verified. ``ModelLoadError`` otherwise.
    """
    return ModelRuntime.load(_FolderSettings(model_dir=model_dir, execution_provider="cpu")).card


class _FolderSettings(Settings):
    """The service's settings for one folder, from init arguments only (no environment, no .env)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)
