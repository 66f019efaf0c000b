"""L2 PGD with EOT and the smoothed soft classifier: closed form on a linear model, the ball
and [0, 1] constraints, per-image radii, EOT passes, no side effects, clear errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pni
from pni.attacks import AttackError
from pni.attacks.l2 import SmoothedSoftmax, pgd_l2, project_l2


class LinearTwoClass(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, 2)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.fc(x.flatten(1))


def test_pgd_l2_on_a_linear_classifier_reaches_the_closed_form_worst_case():
    # Cross-entropy of a linear 2-class model falls along d = w_y - w_o: the worst point of
    # the L2 ball is x - eps * d / ||d|| (the ball stays inside [0, 1] here).
    torch.manual_seed(0)
    model = LinearTwoClass(3 * 4 * 4)
    x = 0.4 + 0.2 * torch.rand(8, 3, 4, 4)
    y = model(x).argmax(1)
    eps = 0.2
    x_adv = pgd_l2(model, x, y, eps, steps=10, random_start=False)
    w = model.fc.weight.detach()
    d = (w[y] - w[1 - y]).view_as(x)
    expected = x - eps * d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    assert torch.allclose(x_adv, expected, atol=1e-5)


def test_outputs_stay_in_each_images_ball_and_in_unit_range():
    torch.manual_seed(0)
    model = pni.inject(pni.create_model("lenet5"), "W+A-a").eval()
    x = torch.rand(5, 1, 28, 28)
    x[:, :, :6] = 0.0
    x[:, :, -6:] = 1.0
    y = torch.randint(0, 10, (5,))
    eps = torch.tensor([0.1, 0.5, 1.0, 2.0, 4.0])
    params = {k: v.clone() for k, v in model.state_dict().items()}
    x_adv = pgd_l2(model, x, y, eps, steps=4, eot=2, generator=torch.Generator().manual_seed(1))
    norms = (x_adv - x).flatten(1).norm(dim=1)
    assert (norms <= eps + 1e-5).all() and x_adv.min() >= 0 and x_adv.max() <= 1
    assert not model.training and all(p.requires_grad and p.grad is None for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in params.items())


def test_eot_passes_per_step_and_one_pass_for_a_deterministic_model():
    torch.manual_seed(0)
    model = LinearTwoClass(16).eval()
    x, y = torch.rand(4, 1, 4, 4), torch.zeros(4, dtype=torch.long)
    pgd_l2(model, x, y, 0.5, steps=3, eot=5)
    assert model.calls == 2 + 3  # the randomness probe, then one pass per step
    smoothed = SmoothedSoftmax(model, 0.25, samples=4)
    model.calls = 0
    pgd_l2(smoothed, x, y, 0.5, steps=3, eot=5)
    assert model.calls == 2 + 3 * 5


def test_smoothed_softmax_gives_log_probabilities_and_follows_the_model_mode():
    torch.manual_seed(0)
    model = LinearTwoClass(16).eval()
    x = torch.rand(3, 1, 4, 4)
    smoothed = SmoothedSoftmax(model, 0.5, samples=32)
    assert not smoothed.training
    out = smoothed(x)
    assert out.shape == (3, 2) and torch.allclose(out.exp().sum(1), torch.ones(3), atol=1e-5)
    exact = SmoothedSoftmax(model, 0.0, samples=2)(x)
    assert torch.allclose(exact, F.log_softmax(model(x), 1), atol=1e-6)


def test_attacking_the_smoothed_linear_classifier_crosses_the_boundary_beyond_its_distance():
    torch.manual_seed(0)
    model = LinearTwoClass(16).eval()
    x = 0.45 + 0.1 * torch.rand(6, 1, 4, 4)
    y = model(x).argmax(1)
    w = model.fc.weight.detach()
    d = (w[y] - w[1 - y])
    distance = ((model(x).gather(1, y[:, None]) - model(x).gather(1, (1 - y)[:, None])).squeeze(1).detach()
                / d.norm(dim=1))
    x_adv = pgd_l2(SmoothedSoftmax(model, 0.1, 16), x, y, distance * 1.5, steps=30)
    assert (model(x_adv).argmax(1) != y).all()
    x_in = pgd_l2(SmoothedSoftmax(model, 0.1, 16), x, y, distance * 0.9, steps=30)
    assert (model(x_in).argmax(1) == y).all()  # g = f: inside the exact radius nothing flips


def test_project_l2_scales_back_only_what_leaves_the_ball():
    x = torch.full((2, 1, 2, 2), 0.5)
    moved = x + torch.tensor([0.1, 0.3]).view(2, 1, 1, 1)  # norms 0.2 and 0.6
    out = project_l2(moved, x, torch.full((2, 1, 1, 1), 0.4))
    assert torch.allclose((out - x).flatten(1).norm(dim=1), torch.tensor([0.2, 0.4]))


@pytest.mark.parametrize("kwargs, match", [
    ({"eps": 0.0}, "eps"), ({"eps": float("nan")}, "eps"), ({"eps": torch.ones(3)}, "eps"),
    ({"eps": 0.5, "step_size": -1.0}, "step_size"), ({"eps": 0.5, "steps": -1}, "steps"),
    ({"eps": 0.5, "eot": 0}, "eot"),
])
def test_bad_arguments_are_attack_errors(kwargs, match):
    model = LinearTwoClass(16)
    x, y = torch.rand(2, 1, 4, 4), torch.zeros(2, dtype=torch.long)
    with pytest.raises(AttackError, match=match):
        pgd_l2(model, x, y, **kwargs)
    with pytest.raises(AttackError, match="sigma"):
        SmoothedSoftmax(model, -1.0)
