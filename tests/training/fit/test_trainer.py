"""The trainer's numeric choices: which autocast a config gets on which device, and the memory layout."""

import contextlib
from pathlib import Path

import pytest
import torch

from training.config import TrainConfig
from training.fit.trainer import _autocast, cpu_has_bf16

CPU = torch.device("cpu")


def _config(**fields: object) -> TrainConfig:
    return TrainConfig(data_dir=Path("unused"), **fields)


def test_cpu_trains_in_fp32_unless_bf16_is_asked_for() -> None:
    assert isinstance(_autocast(CPU, _config()), contextlib.nullcontext)
    # mixed_precision is the GPU's switch: alone it leaves the CPU in fp32.
    assert isinstance(_autocast(CPU, _config(mixed_precision=True)), contextlib.nullcontext)


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16 (AVX512-BF16/AMX)")
def test_cpu_bf16_autocasts_convolutions_and_keeps_the_weights_fp32() -> None:
    conv = torch.nn.Conv2d(1, 4, 3).to(memory_format=torch.channels_last)
    with _autocast(CPU, _config(cpu_bf16=True)):
        out = conv(torch.rand(2, 1, 8, 8))
    assert out.dtype == torch.bfloat16
    assert conv.weight.dtype == torch.float32


@pytest.mark.skipif(cpu_has_bf16(), reason="this CPU has native bf16")
def test_cpu_bf16_falls_back_to_fp32_where_the_cpu_would_only_emulate_it() -> None:
    assert isinstance(_autocast(CPU, _config(cpu_bf16=True)), contextlib.nullcontext)
