"""The substitute-model black-box attack (Papernot et al. 2017): a substitute trained on a
tiny LeNet-5 target's labels with Jacobian-based dataset augmentation agrees with it well
above chance, and FGSM / PGD made on it lower the target's accuracy."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pni
from pni.attacks import AttackError, SubstituteResult, substitute_attack, train_substitute
from pni.attacks.substitute import jacobian_augment, query_labels
from pni.noise import noise_modules

EPS = 0.3


def _target(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    x, y = pni.load_dataset("mnist-sample", "train").tensors()
    model = pni.inject(pni.create_model("lenet5"), "W")
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(3):
        order = torch.randperm(len(y))
        for start in range(0, len(y), 64):
            idx = order[start:start + 64]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def target() -> nn.Module:
    return _target()


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    test = pni.load_dataset("mnist-sample", "test")
    x, y = test.tensors()
    return x[:150], x[150:], y[150:]   # seed images (labels unused), held-out images and labels


@pytest.fixture(scope="module")
def trained(target, data):
    seeds, held, _ = data
    return train_substitute(target, seeds, "lenet5", rounds=3, epochs_per_round=8, lambda_=0.1,
                            holdout=held, seed=0)


def test_substitute_agrees_with_target_and_counts_queries(trained, data):
    substitute, record = trained
    seeds, held, _ = data
    assert record.sizes == [150, 300, 600]                 # the augmentation doubles the set each round
    assert record.queries == 150 + 150 + 300               # one query per labelled point
    assert record.holdout_queries == len(held)
    assert record.agreement is not None and record.agreement > 0.5, record.to_json()
    assert len(record.agreement_per_round) == 3
    assert not substitute.training
    json.dumps(record.to_json())


def test_transferred_examples_lower_target_accuracy(target, trained, data):
    substitute, record = trained
    _, x, y = data
    for attack, steps in (("fgsm", None), ("pgd", 10)):
        result = substitute_attack(target, substitute, x, y, EPS, attack, steps=steps, votes=2, seed=0,
                                   record=record)
        assert isinstance(result, SubstituteResult)
        assert (result.x_adv - x).abs().max() <= EPS + 1e-6
        assert result.clean_accuracy > 0.5
        assert result.accuracy < result.clean_accuracy - 0.1, (attack, result.to_json())
        out = result.to_json()
        assert out["attack"]["attack"] == attack and out["substitute"]["queries"] == record.queries
        json.dumps(out)


def test_jacobian_augment_steps_lambda_and_clips(trained, data):
    substitute, _ = trained
    x = data[0][:16]
    labels = torch.randint(0, 10, (16,))
    new = jacobian_augment(substitute, x, labels, 0.1)
    assert new.shape == x.shape and new.min() >= 0 and new.max() <= 1
    assert torch.all((new - x).abs() <= 0.1 + 1e-6)


def test_queries_use_target_noise_and_leave_it_as_it_was(target, data):
    pni.set_noise(target, False)
    try:
        labels = query_labels(target, data[0][:8])
        assert labels.shape == (8,)
        assert not any(m.enabled for m in noise_modules(target).values())   # switched back off
    finally:
        pni.set_noise(target, True)


def test_bad_arguments(target, data):
    with pytest.raises(AttackError):
        train_substitute(target, data[0][:4], rounds=0)
    with pytest.raises(AttackError):
        substitute_attack(target, target, data[1][:4], data[2][:4], EPS, "zoo")
