"""Square with EOT (``pni.attacks.square``): score-based, so a model whose gradients are
zero everywhere (gradient masking) falls to it where PGD cannot move."""
from __future__ import annotations

import torch
from torch import nn

import pni
from pni.attacks import square
from pni.attacks.registry import build_attacks, get_attack

EPS = 0.3


class MaskedGradients(nn.Module):
    """A randomized toy defense with zero gradients: the input is quantized (``round``:
    zero gradient), the class is whether the mean pixel is above 0.5, plus a little noise
    on the logits at every pass. (Square's patches never reach the last row and column,
    pyautoattack's as the original's: 16x16 images leave it enough pixels.)"""

    num_classes = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.round(x * 10) / 10
        m = q.flatten(1).mean(1) - 0.5
        logits = torch.stack([-20 * m, 20 * m], dim=1)
        return logits + 0.1 * torch.randn_like(logits)


def _toy_data(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(n) % 2
    x = torch.where(y.bool(), 0.6, 0.4).view(n, 1, 1, 1).expand(n, 1, 16, 16).clone()
    return x, y


def test_square_eot_beats_a_gradient_masking_model_where_pgd_fails():
    torch.manual_seed(0)
    model, (x, y) = MaskedGradients(), _toy_data()
    result = pni.evaluate(model, (x, y), ["clean", "eot-pgd", "square"], trials=1, eps=EPS, steps=10,
                          votes=5, attack_options={"eot": 4, "square": {"n_queries": 1000, "eot": 4}})
    acc = result.summary()["without_noise"]
    assert acc["clean"]["mean"] == 100.0
    assert acc["eot-pgd"]["mean"] == 100.0          # zero gradients: PGD cannot move
    assert acc["square"]["mean"] <= 12.5            # the score-based search gets through
    assert acc["worst-case"]["mean"] <= 12.5
    assert result.attacks["square"]["eot"] == 4


def test_square_stays_in_the_ball_and_records_its_draws():
    torch.manual_seed(0)
    model, (x, y) = MaskedGradients(), _toy_data(3)
    out = square(model, x, y, EPS, n_queries=20, eot=3)
    assert out.x_adv.shape == x.shape
    assert float((out.x_adv - x).abs().max()) <= EPS + 1e-6
    assert out.params["eot"] == 3 and out.success.shape == (3,)
    one = square(model, x[:1], y[:1], EPS, n_queries=5, eot=2)   # a batch of one
    assert one.x_adv.shape == (1, 1, 16, 16)


def test_a_deterministic_model_gets_one_draw_per_query():
    torch.manual_seed(0)
    model = pni.create_model("lenet5").eval()
    x, y = pni.load_dataset("mnist-sample", "test").subset(4).tensors()
    assert square(model, x, y, 0.1, n_queries=3, eot=20).params["eot"] == 1


def test_square_is_registered_with_its_options():
    spec = get_attack("square")
    assert spec.in_worst_case and spec.title == "Square-EOT"
    table, params = build_attacks(["square"], eps=0.1, square={"n_queries": 7})
    assert params["square"]["n_queries"] == 7 and params["square"]["eot"] == 20
