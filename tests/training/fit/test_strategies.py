"""Freeze schedules, re-sampling, optimisers and the L1 penalty, on real backbones."""

from collections import Counter

import numpy as np
import pytest
import torch

from training.backbones.factory import create_model
from training.config import TrainConfig
from training.fit.strategies import (
    BalancedSampler,
    Phase,
    class_weights,
    l1_penalty,
    make_optimizer,
    phases,
    set_phase,
    train_mode,
)


def _config(**fields: object) -> TrainConfig:
    return TrainConfig.model_validate({"data_dir": "x", "weights": "none", **fields})


def test_phases_feature_extraction_partial_and_full() -> None:
    assert [p.name for p in phases(_config(head_epochs=2, finetune_epochs=0))] == ["head"]
    partial = phases(_config(head_epochs=1, finetune_epochs=1, finetune_blocks=2))
    assert [(p.name, p.trainable_blocks) for p in partial] == [("head", 0), ("finetune", 2)]
    assert phases(_config(head_epochs=0, finetune_epochs=3))[0].trainable_blocks is None


def test_fine_tuning_the_last_blocks_trains_exactly_those_and_the_head() -> None:
    model = create_model("resnet18", 2, "none").model
    blocks = model.features.blocks()
    trainable = set_phase(model, Phase("finetune", 1, 1e-3, trainable_blocks=2))
    expected = {id(p) for b in blocks[-2:] for p in b.parameters()} | {id(p) for p in model.head.parameters()}
    assert {id(p) for p in trainable} == expected
    train_mode(model, Phase("finetune", 1, 1e-3, trainable_blocks=2))
    assert not blocks[0].training and blocks[-1].training  # frozen BatchNorm keeps its statistics
    head_only = set_phase(model, Phase("head", 1, 1e-3, trainable_blocks=0))
    assert {id(p) for p in head_only} == {id(p) for p in model.head.parameters()}
    everything = set_phase(model, Phase("finetune", 1, 1e-3, trainable_blocks=None))
    assert len(everything) == len(list(model.parameters()))


def test_a_frozen_block_does_not_move_in_a_training_step() -> None:
    model = create_model("baseline_cnn", 2, "none").model
    phase = Phase("finetune", 1, 1e-2, trainable_blocks=1)
    trainable = set_phase(model, phase)
    first, last = model.features.blocks()
    before_first = [p.detach().clone() for p in first.parameters()]
    before_last = [p.detach().clone() for p in last.parameters()]
    optimizer = make_optimizer(_config(), trainable, 1e-2)
    train_mode(model, phase)
    loss = torch.nn.CrossEntropyLoss()(model(torch.rand(4, 1, 32, 32)), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(before_first, first.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(before_last, last.parameters(), strict=True))


@pytest.mark.parametrize("mode", ["oversample", "undersample"])
def test_balanced_sampler_gives_every_class_the_same_share_each_epoch(mode: str) -> None:
    labels = np.array([0] * 10 + [1] * 40 + [2] * 25)
    sampler = BalancedSampler(labels, mode, seed=3)
    epoch = list(sampler)
    per_class = 40 if mode == "oversample" else 10
    assert len(epoch) == len(sampler) == 3 * per_class
    assert Counter(labels[epoch].tolist()) == {0: per_class, 1: per_class, 2: per_class}
    if mode == "undersample":  # a fresh subset of the majority class each epoch
        assert set(epoch) != set(sampler)
        assert len(set(epoch)) == len(epoch)
    else:
        assert set(np.flatnonzero(labels == 1)) <= set(epoch)  # the largest class is seen in full


def test_class_weights_are_inverse_frequency() -> None:
    weights = class_weights(np.array([0] * 30 + [1] * 10), 2)
    assert weights.tolist() == pytest.approx([40 / 60, 40 / 20])


def test_l1_penalty_sums_kernels_not_biases() -> None:
    layer = torch.nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.fill_(-0.5)
        layer.bias.fill_(7.0)
    penalty = l1_penalty(list(layer.parameters()), 0.1)
    assert penalty is not None and float(penalty.detach()) == pytest.approx(0.1 * 6 * 0.5)
    assert l1_penalty(list(layer.parameters()), 0.0) is None


@pytest.mark.parametrize(
    ("name", "kind"), [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)]
)
def test_optimiser_choice(name: str, kind: type) -> None:
    parameters = list(torch.nn.Linear(2, 2).parameters())
    optimizer = make_optimizer(_config(optimizer=name, weight_decay=0.01), parameters, 0.1)
    assert type(optimizer) is kind
    assert optimizer.param_groups[0]["weight_decay"] == 0.01


def test_balanced_sampler_splits_one_epoch_between_processes() -> None:
    labels = np.array([0] * 10 + [1] * 30)
    shares = [BalancedSampler(labels, "oversample", seed=5, rank=r, world_size=2) for r in range(2)]
    for sampler in shares:
        sampler.set_epoch(3)
    first, second = (list(s) for s in shares)
    whole = BalancedSampler(labels, "oversample", seed=5)
    whole.set_epoch(3)
    assert len(first) == len(second) == 30
    assert sorted(first + second) == sorted(whole)  # the same epoch, dealt out
