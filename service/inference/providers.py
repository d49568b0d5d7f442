"""Which ONNX Runtime execution providers a session gets, with what options, and why a GPU was not used."""

import logging
from pathlib import Path

import onnxruntime as ort

from service.contract import ModelCard
from service.inference.lanes import LaneLayout, lane_layout
from service.settings import Settings
from service.store.errors import ModelLoadError

logger = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
CPU = "CPUExecutionProvider"
GPU_PROVIDERS = (CUDA, TENSORRT)
ProviderSpec = str | tuple[str, dict[str, str]]


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


def provider_fallback(requested: str, available: list[str], in_use: str) -> str | None:
    """Why ``auto`` did not get the GPU, or None: never a silent fallback."""
    if requested != "auto" or in_use == CUDA:
        return None
    if CUDA not in available:
        return f"CXR_EXECUTION_PROVIDER=auto and this onnxruntime build has no {CUDA} (it offers {available})"
    return f"{CUDA} is installed but could not be used (CUDA/cuDNN libraries missing or no GPU visible)"


def switch(setting: str, provider: str) -> bool:
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


def session_options(settings: Settings, on_gpu: bool = False) -> ort.SessionOptions:
    """The service's session options, also used by the benchmarks so their ceiling is the service's."""
    options = ort.SessionOptions()
    # ORT's default is one thread per core of the *host*: in a container limited to 2 CPUs on a
    # 64-core node that is 64 threads fighting over 2 CPUs. The CPUs this process may use are shared
    # out between the lanes (batches running at once, service.inference.lanes).
    options.intra_op_num_threads = lane_layout(settings, on_gpu).threads
    # The graph is a chain: inter-op threads would idle.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    spin = "1" if settings.ort_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
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


def create_session(
    model_bytes: bytes, providers: list[ProviderSpec], settings: Settings, onnx_path: Path
) -> ort.InferenceSession:
    options = session_options(settings, on_gpu=_plans_gpu(providers))
    try:
        return ort.InferenceSession(model_bytes, sess_options=options, providers=providers)
    except Exception as exc:  # ORT raises bare RuntimeError/Fail subclasses; all mean "not loadable"
        raise ModelLoadError(f"ONNX Runtime cannot load {onnx_path}: {type(exc).__name__}: {exc}") from exc


def _plans_gpu(providers: list[ProviderSpec]) -> bool:
    return providers[0] != CPU  # a name, or (name, options)


def open_session(
    model_bytes: bytes, settings: Settings, card: ModelCard, onnx_path: Path
) -> tuple[ort.InferenceSession, str | None, LaneLayout]:
    """A session on the providers ``settings`` ask for, why ``auto`` did not get the GPU (or None),
    and the lanes its threads were sized for.

    A GPU asked for by name and not obtained is refused: silently serving on the CPU would be slower
    than the deployment was sized for. ``auto`` falling back keeps the GPU's plan (one lane on every
    CPU), so lanes and threads never oversubscribe the CPUs.
    """
    available = ort.get_available_providers()
    providers = execution_providers(settings, card, available)
    session = create_session(model_bytes, providers, settings, onnx_path)
    layout = lane_layout(settings, on_gpu=_plans_gpu(providers))
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
    return session, fallback, layout
