"""ONNX Runtime model loading and inference.

``ModelRuntime.load`` refuses to return unless the model directory is internally consistent: the
card parses, ``model.onnx`` hashes to the card's sha256, the graph's input/outputs match the card's
pixel contract and class list, no tensor keeps its data outside the file, and a warm-up run produces
outputs of the declared shapes. A model that passes is safe to serve; one that does not stops the
process (or, on a hot reload, is refused while the old model keeps serving) with a ``ModelLoadError``
that says what to fix. Nothing here depends on HTTP, so the same checks can run from a shell.
"""

import hashlib
import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from pydantic import ValidationError

from service.active_version import NoPointerError, PointerError, pointer_path, read_active
from service.batching import BatchPolicy, MicroBatcher
from service.contract import (
    PREPROCESSING_VERSION,
    DecisionThreshold,
    DecodedImage,
    DecodeLimits,
    ModelCard,
    load_model_input,
)
from service.contract.model_card import (
    CAM_OUTPUT,
    CARD_FILENAME,
    INPUT_NAME,
    ONNX_FILENAME,
    PROBABILITIES_OUTPUT,
)
from service.cpus import available_cpus
from service.external_data import MalformedModelError, external_data_tensors
from service.settings import ACTIVE, LATEST, Settings

logger = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
CPU = "CPUExecutionProvider"
GPU_PROVIDERS = (CUDA, TENSORRT)
ProviderSpec = str | tuple[str, dict[str, str]]
_PROBABILITY_SUM_TOLERANCE = 1e-3


class ModelLoadError(RuntimeError):
    """The configured model cannot be served; the message says which check failed and why."""


class ModelNotFoundError(ModelLoadError):
    """The requested model directory or version does not exist in the store."""


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


def resolve_model_dir(settings: Settings, version: str | None = None) -> Path:
    """The version directory to load: ``model_dir`` if set, else ``model_store/name/version``.

    ``version`` (a hot reload's choice) replaces ``settings.model_version``; it is meaningless when
    ``model_dir`` pins one directory, so asking for both is refused rather than half-honoured.
    """
    if settings.model_dir is not None:
        if version is not None:
            raise ModelLoadError(
                f"CXR_MODEL_DIR pins the model to {settings.model_dir}; a version cannot be chosen. "
                "Reload without a version, or configure CXR_MODEL_STORE/CXR_MODEL_NAME instead."
            )
        return settings.model_dir
    name_dir = settings.model_store / settings.model_name
    wanted = settings.model_version if version is None else version
    if wanted == ACTIVE:
        return _active_dir(name_dir)
    if wanted != LATEST:
        return name_dir / wanted
    if not name_dir.is_dir():
        raise ModelNotFoundError(
            f"Model store directory {name_dir} does not exist (CXR_MODEL_STORE={settings.model_store}, "
            f"CXR_MODEL_NAME={settings.model_name})."
        )
    # Plain string sort, as documented: use sortable version names (timestamps, v001...). Hidden
    # folders are exports still being staged, never a version.
    versions = sorted(
        p.name for p in name_dir.iterdir() if not p.name.startswith(".") and (p / CARD_FILENAME).is_file()
    )
    if not versions:
        raise ModelNotFoundError(f"No version directory containing {CARD_FILENAME} under {name_dir}.")
    return name_dir / versions[-1]


def _active_dir(name_dir: Path) -> Path:
    """The version the store's ACTIVE pointer names, read now (it moves when a version is published)."""
    try:
        version = read_active(name_dir)
    except NoPointerError as exc:
        raise ModelNotFoundError(f"CXR_MODEL_VERSION=active, but {exc}.") from None
    except PointerError as exc:
        raise ModelLoadError(f"CXR_MODEL_VERSION=active, but {exc}.") from None
    model_dir = name_dir / version
    if not model_dir.is_dir():
        raise ModelNotFoundError(
            f"CXR_MODEL_VERSION=active: {pointer_path(name_dir)} names version {version!r}, but "
            f"{model_dir} does not exist. Activate an existing version (python -m training activate)."
        )
    return model_dir


def select_providers(
    requested: str,
    available: list[str],
    tensorrt_options: dict[str, str] | None = None,
    cuda_options: dict[str, str] | None = None,
) -> list[ProviderSpec]:
    """Execution providers in preference order; CPU is always last so ORT can fall back per node."""
    cuda: ProviderSpec = (CUDA, cuda_options) if cuda_options else CUDA
    if requested == "cpu":
        return [CPU]
    if requested == "tensorrt":
        if TENSORRT not in available or CUDA not in available:
            raise ModelLoadError(
                f"CXR_EXECUTION_PROVIDER=tensorrt but this onnxruntime build offers only {available}; "
                "install onnxruntime-gpu and TensorRT, or set CXR_EXECUTION_PROVIDER=cuda, cpu or auto."
            )
        return [(TENSORRT, tensorrt_options or {}), cuda, CPU]
    if CUDA in available:
        return [cuda, CPU]
    if requested == "cuda":
        raise ModelLoadError(
            f"CXR_EXECUTION_PROVIDER=cuda but this onnxruntime build offers only {available}; "
            "install onnxruntime-gpu with a matching CUDA, or set CXR_EXECUTION_PROVIDER=cpu or auto."
        )
    return [CPU]


def load_card(model_dir: Path) -> ModelCard:
    card_path = model_dir / CARD_FILENAME
    if not card_path.is_file():
        raise ModelLoadError(f"Model card {card_path} not found.")
    try:
        card = ModelCard.model_validate_json(card_path.read_bytes())
    except ValidationError as exc:
        raise ModelLoadError(f"Model card {card_path} is invalid: {exc}") from exc
    _check_card(card, card_path)
    return card


def _check_card(card: ModelCard, card_path: Path) -> None:
    if len(set(card.class_names)) != len(card.class_names):
        raise ModelLoadError(f"Model card {card_path}: class_names {card.class_names} has duplicates.")
    contract = card.pixel_contract
    if contract.preprocessing != PREPROCESSING_VERSION:
        raise ModelLoadError(
            f"Model card {card_path}: the model was trained with preprocessing {contract.preprocessing!r} "
            f"but this service implements {PREPROCESSING_VERSION!r}; re-export the model or deploy the "
            "service version that matches it."
        )
    if contract.input_name != INPUT_NAME:
        raise ModelLoadError(
            f"Model card {card_path}: pixel_contract.input_name is {contract.input_name!r}, "
            f"expected {INPUT_NAME!r}."
        )
    threshold = card.decision_threshold
    if threshold is not None and threshold.positive_class not in card.class_names:
        raise ModelLoadError(
            f"Model card {card_path}: decision_threshold.positive_class {threshold.positive_class!r} "
            f"is not one of class_names {card.class_names}."
        )


def _check_graph(session: ort.InferenceSession, card: ModelCard, onnx_path: Path) -> None:
    """Compare the graph's declared input/outputs with the card, before trusting either."""
    contract = card.pixel_contract
    inputs = session.get_inputs()
    if [i.name for i in inputs] != [contract.input_name]:
        raise ModelLoadError(
            f"{onnx_path}: graph inputs are {[i.name for i in inputs]}, the card expects exactly "
            f"[{contract.input_name!r}]."
        )
    image = inputs[0]
    if image.type != "tensor(float)":
        raise ModelLoadError(f"{onnx_path}: input {image.name!r} is {image.type}, expected tensor(float).")
    expected = [contract.channels, contract.height, contract.width]
    shape = list(image.shape)
    batch_ok = len(shape) == 4 and (not isinstance(shape[0], int) or shape[0] in (-1, 1))
    if not batch_ok or shape[1:] != expected:
        raise ModelLoadError(
            f"{onnx_path}: input {image.name!r} has shape {shape}, but the card's pixel_contract says "
            f"[N, {contract.channels}, {contract.height}, {contract.width}] (NCHW)."
        )
    outputs = {o.name: o for o in session.get_outputs()}
    missing = {PROBABILITIES_OUTPUT, CAM_OUTPUT} - outputs.keys()
    if missing:
        raise ModelLoadError(
            f"{onnx_path}: graph outputs are {sorted(outputs)}; missing {sorted(missing)} "
            f"(expected {PROBABILITIES_OUTPUT!r} [N, C] and {CAM_OUTPUT!r} [N, C, h, w])."
        )
    if card.ood is not None and card.ood.output_name not in outputs:
        raise ModelLoadError(
            f"{onnx_path}: the card declares an out-of-distribution detector but the graph has no "
            f"{card.ood.output_name!r} output."
        )
    n_classes = len(card.class_names)
    probs_shape = list(outputs[PROBABILITIES_OUTPUT].shape)
    cam_shape = list(outputs[CAM_OUTPUT].shape)
    # Symbolic dims are checked on the warm-up run instead; static ones must agree now.
    if len(probs_shape) != 2 or probs_shape[1] not in (n_classes, *_symbolic(probs_shape[1])):
        raise ModelLoadError(
            f"{onnx_path}: output {PROBABILITIES_OUTPUT!r} has shape {probs_shape}, expected "
            f"[N, {n_classes}] for classes {card.class_names}."
        )
    if len(cam_shape) != 4 or cam_shape[1] not in (n_classes, *_symbolic(cam_shape[1])):
        raise ModelLoadError(
            f"{onnx_path}: output {CAM_OUTPUT!r} has shape {cam_shape}, expected [N, {n_classes}, h, w]."
        )


def _symbolic(dim: Any) -> tuple[Any, ...]:
    return () if isinstance(dim, int) else (dim,)


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
        self.threshold = _operating_point(card, threshold_override)
        self._outputs = [PROBABILITIES_OUTPUT, CAM_OUTPUT] + ([card.ood.output_name] if card.ood else [])
        # On a GPU, I/O binding copies the batch to the device once and lets ORT allocate the outputs
        # where it computes them, instead of per-run staging in session.run.
        self.io_binding = io_binding
        # Fixed-shape runs: every batch is padded with blank films to this size and the padding's
        # outputs dropped. The CUDA provider re-plans on every change of input shape.
        self.pad_to = pad_to
        self._batcher: MicroBatcher[Inference] = MicroBatcher(self.infer_batch, batch_policy or BatchPolicy())

    @classmethod
    def load(cls, settings: Settings, version: str | None = None) -> "ModelRuntime":
        """Load and verify the configured model, or ``version`` of it from the store (hot reload)."""
        model_dir = resolve_model_dir(settings, version)
        if not model_dir.is_dir():
            raise ModelNotFoundError(f"Model directory {model_dir} does not exist.")
        card = load_card(model_dir)
        onnx_path = model_dir / ONNX_FILENAME
        if not onnx_path.is_file():
            raise ModelLoadError(f"ONNX file {onnx_path} not found.")
        # Hash and load the same bytes, so the file cannot change between the check and the load.
        model_bytes = onnx_path.read_bytes()
        sha256 = hashlib.sha256(model_bytes).hexdigest()
        if sha256 != card.onnx_sha256:
            raise ModelLoadError(
                f"{onnx_path} has sha256 {sha256} but {CARD_FILENAME} says {card.onnx_sha256}: the model "
                "file was modified or does not belong to this card. Refusing to serve it."
            )
        _refuse_external_data(model_bytes, onnx_path)
        available = ort.get_available_providers()
        providers = execution_providers(settings, card, available)
        session = _create_session(model_bytes, providers, settings, onnx_path)
        in_use = session.get_providers()[0]
        wanted = {"cuda": CUDA, "tensorrt": TENSORRT}.get(settings.execution_provider)
        if wanted is not None and in_use != wanted:
            raise ModelLoadError(
                f"CXR_EXECUTION_PROVIDER={settings.execution_provider} but ONNX Runtime fell back to "
                f"{in_use} (CUDA/cuDNN/TensorRT libraries missing or no GPU visible); fix the GPU setup "
                "or set CXR_EXECUTION_PROVIDER=cpu or auto."
            )
        fallback = provider_fallback(settings.execution_provider, available, in_use)
        if fallback is not None:
            logger.warning("execution provider fell back to %s: %s", in_use, fallback)
        _check_graph(session, card, onnx_path)
        runtime = cls(
            model_dir,
            card,
            session,
            sha256,
            threshold_override=settings.decision_threshold,
            provider_fallback=fallback,
            batch_policy=BatchPolicy(
                max_batch=settings.max_batch_size, max_wait_s=settings.batch_wait_ms / 1000.0
            ),
            io_binding=_switch(settings.io_binding, in_use),
            pad_to=settings.max_batch_size if _switch(settings.pad_batches, in_use) else None,
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
                "onnx_sha256": sha256,
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
        """Queue one preprocessed film ``[1, H, W]`` for the next micro-batch (see service.batching)."""
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
        inference_ms = (time.perf_counter() - start) * 1000.0
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


def provider_fallback(requested: str, available: list[str], in_use: str) -> str | None:
    """Why ``auto`` did not get the GPU, or None: never a silent fallback."""
    if requested != "auto" or in_use == CUDA:
        return None
    if CUDA not in available:
        return f"CXR_EXECUTION_PROVIDER=auto and this onnxruntime build has no {CUDA} (it offers {available})"
    return f"{CUDA} is installed but could not be used (CUDA/cuDNN libraries missing or no GPU visible)"


def _refuse_external_data(model_bytes: bytes, onnx_path: Path) -> None:
    try:
        external = external_data_tensors(model_bytes)
    except MalformedModelError as exc:
        raise ModelLoadError(f"{onnx_path} is not a well-formed ONNX protobuf ({exc}).") from exc
    if external:
        shown = ", ".join(repr(name) for name in external[:5]) + (", ..." if len(external) > 5 else "")
        raise ModelLoadError(
            f"{onnx_path}: {len(external)} tensor(s) keep their data outside the file ({shown}). "
            "External data is not covered by the card's sha256, so it is refused; re-export with "
            "the weights inside model.onnx (onnx.save_model(..., save_as_external_data=False))."
        )


def _operating_point(card: ModelCard, override: float | None) -> DecisionThreshold | None:
    """The card's threshold for a binary model, or the deployment's override of it, said as such."""
    threshold = card.decision_threshold if len(card.class_names) == 2 else None
    if override is None:
        return threshold
    if threshold is None:
        raise ModelLoadError(
            "CXR_DECISION_THRESHOLD is set, but the model has no binary operating point to override."
        )
    return threshold.model_copy(
        update={
            "value": override,
            "method": f"deployment override CXR_DECISION_THRESHOLD={override} (the card's validated "
            f"operating point is {threshold.value:.4f}, {threshold.method})",
            # Unknown at a threshold nobody validated: reporting the card's figures would mislead.
            "validation_sensitivity": None,
            "validation_specificity": None,
        }
    )


def _switch(setting: str, provider: str) -> bool:
    """An auto | on | off setting: auto means on for the GPU providers."""
    return setting == "on" or (setting == "auto" and provider in GPU_PROVIDERS)


def execution_providers(settings: Settings, card: ModelCard, available: list[str]) -> list[ProviderSpec]:
    """The provider list a session gets for ``settings``, with TensorRT's cache folder made."""
    trt = None
    if settings.execution_provider == "tensorrt":
        settings.trt_cache_dir.mkdir(parents=True, exist_ok=True)
        trt = tensorrt_options(settings, card)
    return select_providers(settings.execution_provider, available, trt, cuda_options(settings))


def cuda_options(settings: Settings) -> dict[str, str]:
    return {"cudnn_conv_algo_search": settings.cudnn_conv_algo_search.upper()}


def session_options(settings: Settings) -> ort.SessionOptions:
    """The service's session options, also used by the benchmarks so their ceiling is the service's."""
    options = ort.SessionOptions()
    # ORT's default is one thread per core of the *host*: in a container limited to 2 CPUs on a
    # 64-core node that is 64 threads fighting over 2 CPUs. Default to the CPUs this process may use.
    options.intra_op_num_threads = settings.intra_op_threads or available_cpus()
    # One batch runs at a time (service.batching) and the graph is a chain: inter-op threads would idle.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Fatal only. ORT writes its messages straight to stderr, outside the JSON log format, and every
    # error it would print there (a failed run, a model it cannot load) also reaches us as an exception.
    options.log_severity_level = 4
    return options


def tensorrt_options(settings: Settings, card: ModelCard) -> dict[str, str]:
    """TensorRT with a persistent engine cache and one optimisation profile spanning batch 1 to the
    micro-batch limit, so no request shape triggers an engine rebuild while serving."""
    contract = card.pixel_contract
    name, shape = contract.input_name, f"1x{contract.height}x{contract.width}"
    cache = str(settings.trt_cache_dir)
    return {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": cache,
        "trt_fp16_enable": str(settings.trt_fp16),
        "trt_profile_min_shapes": f"{name}:1x{shape}",
        "trt_profile_opt_shapes": f"{name}:{settings.max_batch_size}x{shape}",
        "trt_profile_max_shapes": f"{name}:{settings.max_batch_size}x{shape}",
    }


def _create_session(
    model_bytes: bytes, providers: list[ProviderSpec], settings: Settings, onnx_path: Path
) -> ort.InferenceSession:
    options = session_options(settings)
    try:
        return ort.InferenceSession(model_bytes, sess_options=options, providers=providers)
    except Exception as exc:  # ORT raises bare RuntimeError/Fail subclasses; all mean "not loadable"
        raise ModelLoadError(f"ONNX Runtime cannot load {onnx_path}: {type(exc).__name__}: {exc}") from exc
