"""FGSM and PGD (Eq. 1-2, 12): closed-form worst case, constraints, no side effects."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import pni
from pni.attacks import AttackError, fgsm, pgd


class LinearTwoClass(nn.Module):
    """logits = W x + b on flattened images: the loss-maximizing L-inf point is closed-form."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, 2)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_pgd_on_a_linear_classifier_reaches_the_closed_form_worst_case():
    torch.manual_seed(0)
    model = LinearTwoClass(3 * 4 * 4)
    x = torch.rand(16, 3, 4, 4)
    y = model(x).argmax(1)
    eps = 0.1
    x_adv = pgd(model, x, y, eps, step_size=eps / 4, steps=20)
    # CE grows as the margin (w_y - w_o) . x shrinks: each pixel moves against sign(w_y - w_o)
    w = model.fc.weight.detach()
    direction = (w[y] - w[1 - y]).view_as(x)
    expected = (x - eps * direction.sign()).clamp(0, 1)
    assert torch.allclose(x_adv, expected, atol=1e-6)


def test_fgsm_is_one_signed_step_clipped_to_unit_range():
    torch.manual_seed(0)
    model = LinearTwoClass(2 * 3 * 3)
    x = torch.rand(8, 2, 3, 3)
    y = torch.randint(0, 2, (8,))
    x_adv = fgsm(model, x, y, 0.05)
    w = model.fc.weight.detach()
    direction = (w[y] - w[1 - y]).view_as(x)
    assert torch.allclose(x_adv, (x - 0.05 * direction.sign()).clamp(0, 1), atol=1e-6)


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_outputs_respect_the_eps_ball_and_unit_range(attack):
    torch.manual_seed(0)
    model = pni.inject(pni.create_model("lenet5"), "W+A-a").eval()
    x = torch.rand(6, 1, 28, 28)
    x[:, :, :5] = 0.0
    x[:, :, -5:] = 1.0
    y = torch.randint(0, 10, (6,))
    eps = 0.2
    if attack == "fgsm":
        x_adv = fgsm(model, x, y, eps)
    else:
        x_adv = pgd(model, x, y, eps, 0.07, 5)
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not x_adv.requires_grad
    assert (x_adv != x).any()


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("noise_on", [True, False])
def test_mode_noise_switch_and_parameter_grads_are_left_as_they_were(training, noise_on):
    torch.manual_seed(0)
    model = pni.inject(pni.create_model("lenet5"), "W")
    model.train(training)
    pni.set_noise(model, noise_on)
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    pgd(model, x, y, 0.1, 0.05, 3, eot=2)
    assert model.training is training
    assert all(m.enabled is noise_on for m in pni.noise_modules(model).values())
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_eot_averages_the_gradient_over_noise_draws():
    torch.manual_seed(0)
    model = pni.inject(pni.create_model("lenet5"), "W", init_alpha=1.0).eval()
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    from pni.attacks import input_gradient

    singles = torch.stack([input_gradient(model, x, y, eot=1)[0] for _ in range(8)])
    averaged = torch.stack([input_gradient(model, x, y, eot=8)[0] for _ in range(8)])
    # averaging k independent draws shrinks the spread across repeats
    assert averaged.std(0).mean() < 0.6 * singles.std(0).mean()


@pytest.mark.parametrize("kwargs,match", [
    ({"eps": 0.0}, "eps must be in"), ({"eps": 1.5}, "eps must be in"),
    ({"steps": -1}, "steps must be"), ({"eot": 0}, "eot must be"),
])
def test_bad_attack_arguments_are_clear_errors(kwargs, match):
    model = pni.create_model("lenet5")
    args = {"eps": 0.1, "step_size": 0.01, "steps": 2, "eot": 1} | kwargs
    with pytest.raises(AttackError, match=match):
        pgd(model, torch.rand(2, 1, 28, 28), torch.zeros(2, dtype=torch.long), **args)


def test_images_outside_unit_range_are_refused():
    model = pni.create_model("lenet5")
    with pytest.raises(AttackError, match=r"\[0, 1\]"):
        fgsm(model, torch.rand(2, 1, 28, 28) * 255, torch.zeros(2, dtype=torch.long), 0.1)
