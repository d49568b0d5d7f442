"""Grad-CAM as plain tensor operations, so it can live inside the exported ONNX graph.

Grad-CAM for class c needs d logit_c / d A, with A the last convolutional map. Autograd cannot be
exported, but the head after A is a short chain of simple layers, so we back-propagate one-hot
cotangents for all classes at once through it by hand (a vector-Jacobian product per layer).
Each rule below matches what PyTorch autograd computes for that layer in eval mode, which the tests
check against the ``grad-cam`` package.
"""

from collections.abc import Callable

import torch
from torch import nn

from training.backbones.factory import Classifier, GlobalAvgPool
from training.ood.statistics import OodStatistics, ood_score


class UnsupportedHeadLayerError(TypeError):
    pass


VjpRule = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _linear(layer: nn.Module, inp: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    assert isinstance(layer, nn.Linear)
    return torch.matmul(grad, layer.weight)


def _relu(layer: nn.Module, inp: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return grad * (inp > 0).to(grad.dtype).unsqueeze(1)  # autograd's relu'(0) is 0 too


def _relu6(layer: nn.Module, inp: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return grad * ((inp > 0) & (inp < 6)).to(grad.dtype).unsqueeze(1)


def _identity(layer: nn.Module, inp: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return grad  # Dropout in eval mode, Identity


def _batchnorm1d(layer: nn.Module, inp: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    assert isinstance(layer, nn.BatchNorm1d) and layer.running_var is not None
    weight = layer.weight if layer.weight is not None else torch.ones_like(layer.running_var)
    return grad * (weight / torch.sqrt(layer.running_var + layer.eps))


def _flatten(layer: nn.Module, inp: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    assert isinstance(layer, nn.Flatten)
    if layer.start_dim != 1 or layer.end_dim != -1:
        raise UnsupportedHeadLayerError("only Flatten(start_dim=1, end_dim=-1) is supported")
    return grad.reshape(grad.shape[0], grad.shape[1], *inp.shape[1:])


def _global_avg_pool(layer: nn.Module, inp: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    height, width = inp.shape[-2], inp.shape[-1]
    spread = (grad / (height * width)).unsqueeze(-1).unsqueeze(-1)
    return spread.expand(*grad.shape, height, width)


_RULES: dict[type[nn.Module], VjpRule] = {
    nn.Linear: _linear,
    nn.ReLU: _relu,
    nn.ReLU6: _relu6,
    nn.Dropout: _identity,
    nn.Identity: _identity,
    nn.BatchNorm1d: _batchnorm1d,
    nn.Flatten: _flatten,
    GlobalAvgPool: _global_avg_pool,
}


def _rule(layer: nn.Module) -> VjpRule:
    try:
        return _RULES[type(layer)]
    except KeyError:
        raise UnsupportedHeadLayerError(f"No Grad-CAM rule for head layer {type(layer).__name__}") from None


def head_forward_and_gradient(head: nn.Sequential, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [N, C] and d logits / d fmap as [N or 1, C, K, h, w]."""
    inputs = []
    x = fmap
    for layer in head:
        inputs.append(x)
        x = layer(x)
    logits = x
    num_classes = logits.shape[1]
    grad = torch.eye(num_classes, dtype=fmap.dtype, device=fmap.device).unsqueeze(0)
    # ``grad`` keeps a class axis after the batch axis: [N or 1, C, *layer_input_shape[1:]].
    for layer, inp in zip(reversed(head), reversed(inputs), strict=True):
        grad = _rule(layer)(layer, inp, grad)
    return logits, grad


def check_head_supported(head: nn.Sequential) -> None:
    """Fail at export time, not at serving time, when a head has a layer without a rule."""
    for layer in head:
        _rule(layer)


def grad_cam(fmap: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of every class: ReLU(sum_k mean_ij(dy_c/dA_k) * A_k), shape [N, C, h, w]."""
    weights = gradient.mean(dim=(-2, -1))  # [N or 1, C, K]
    n, k, h, w = fmap.shape
    maps = torch.matmul(weights, fmap.reshape(n, k, h * w))  # [N, C, h*w]
    return torch.relu(maps).reshape(n, -1, h, w)


class ExportGraph(nn.Module):
    """What is exported: image [N,1,H,W] in [0,1] -> probabilities [N,C], cam [N,C,h,w], and with
    feature statistics also ood_score [N]."""

    temperature: torch.Tensor

    def __init__(self, model: Classifier, temperature: float = 1.0, ood: OodStatistics | None = None) -> None:
        super().__init__()
        check_head_supported(model.head)
        self.model = model.eval()
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.ood = ood

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mid, fmap = self.model.forward_features_with_tap(image)
        logits, gradient = head_forward_and_gradient(self.model.head, fmap)
        probabilities = torch.softmax(logits / self.temperature, dim=1)
        cam = grad_cam(fmap, gradient)
        if self.ood is None:
            return probabilities, cam
        return probabilities, cam, ood_score(image, mid, fmap, self.ood)
