"""BatchNorm folding for eval-mode attack passes: the same random function, restored after."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import pni
from pni.attacks import pgd
from pni.models.fold import folded_batchnorm


def _model(name: str, location: str | None) -> nn.Module:
    torch.manual_seed(0)
    model = pni.create_model(name)
    if location:
        pni.inject(model, location)
    for module in model.modules():  # non-trivial statistics
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("name,pairs", [("resnet20", 19), ("resnet18", 20)])
@pytest.mark.parametrize("location", [None, "W", "W+A-b"])
def test_folded_model_is_the_same_function_with_the_same_noise_draws(name, pairs, location):
    model = _model(name, location)
    x = torch.rand(4, 3, 32, 32)
    torch.manual_seed(1)
    reference = model(x)
    with folded_batchnorm(model) as folded:
        torch.manual_seed(1)
        out = model(x)
    assert folded == pairs
    assert torch.allclose(out, reference, atol=1e-4, rtol=1e-4)
    torch.manual_seed(1)
    assert torch.equal(model(x), reference)  # restored exactly


def test_pairs_with_output_noise_and_train_mode_are_not_folded():
    model = _model("resnet20", "A-a")
    with folded_batchnorm(model) as folded:
        assert folded == 0
    model = _model("resnet20", None).train()
    with folded_batchnorm(model) as folded:
        assert folded == 0
    assert not any("forward" in vars(m) for m in model.modules())


def test_fold_leaves_parameters_and_buffers_untouched():
    model = _model("resnet20", "W")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with folded_batchnorm(model):
        model(torch.rand(2, 3, 32, 32))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any("forward" in vars(m) for m in model.modules())


def test_pgd_with_and_without_fold_agree():
    model = _model("resnet20", None)
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    torch.manual_seed(2)
    folded = pgd(model, x, y, 8 / 255, 2 / 255, 5, fold_bn=True)
    torch.manual_seed(2)
    plain = pgd(model, x, y, 8 / 255, 2 / 255, 5, fold_bn=False)
    # the same steps up to rare sign flips of near-zero gradient entries
    assert (folded - plain).abs().gt(1e-6).float().mean() < 0.01
