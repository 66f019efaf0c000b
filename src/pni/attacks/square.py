"""Square attack (Andriushchenko et al. 2020) with EOT: score-based, no gradients.

Square is a random search over the vertices of the L-inf eps-ball: each query adds a
random square patch of +-2 eps to the current best point and keeps it when the margin
loss drops. It never looks at a gradient, so a model that hides its gradients (shattered,
zero or random ones) gains nothing against it: the standard check against gradient
obfuscation. For a randomized model every query's score is the mean over ``eot`` noise
draws (the model's softmax averaged, then its log: the expected prediction), so one lucky
draw neither accepts nor rejects a step.

pni drives pyautoattack's ``SquareAttack`` (its schedule and patch sampling, not rewritten)
through an EOT wrapper (``EOTScores``) and calls its single run directly: every image keeps
its lowest-margin point, not only those the search already fooled, and the evaluation then
judges that point over fresh draws (``votes``) as every other attack.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import attack_mode, check_eps, check_images, check_positive_int, frozen_parameters, is_randomized
from ._common import AttackError
from .registry import LINF_THREAT, Attack, AttackFlag, AttackSpec, register_attack

DEFAULT_QUERIES = 5000   # pyautoattack's (AutoAttack 'standard')
DEFAULT_SQUARE_EOT = 20  # draws each query's score is averaged over (randomized models)


class EOTScores(nn.Module):
    """``log(mean over draws of softmax(model(x)))``: the scores of the expected prediction
    over ``draws`` noise draws (one pass when ``draws`` is 1). Counts the forward passes."""

    def __init__(self, model: nn.Module, draws: int) -> None:
        super().__init__()
        self.model = model
        self.draws = draws
        self.passes = 0

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        probs = None
        for _ in range(self.draws):
            p = F.softmax(self.model(x).float(), dim=1)
            probs = p if probs is None else probs + p
        self.passes += self.draws
        return torch.log((probs / self.draws).clamp_min(1e-30))


@dataclass
class SquareResult:
    """What ``square`` returns: each image's lowest-margin point, whether the EOT scores
    called it misclassified (``success``, the attack's own check) and whether they called
    the clean image correct (``initially_correct``)."""

    x_adv: Tensor
    success: Tensor
    initially_correct: Tensor
    params: dict[str, Any]

    @property
    def success_rate(self) -> float:
        attacked = self.initially_correct
        return float(self.success[attacked].float().mean()) if attacked.any() else math.nan

    def per_sample(self) -> dict[str, Tensor]:
        return {"success": self.success, "initially_correct": self.initially_correct}


def square(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, n_queries: int = DEFAULT_QUERIES,
           eot: int = DEFAULT_SQUARE_EOT, p_init: float = 0.8, loss: str = "margin",
           batch_size: int = 256, keep_mode: bool = False) -> SquareResult:
    """L-inf Square attack with EOT: score-based random search, no gradients.

    Distance: L-inf. Runs ``pyautoattack.square.SquareAttack`` (one run of ``n_queries``
    queries, p_init 0.8, the rescaled schedule) on ``EOTScores(model, eot)``; a model whose
    two passes agree gets one draw per query. The random state is torch's global generator
    (seeded trials repeat). The model runs in eval mode and is left in its own mode.

    Args:
        model: the classifier (images in [0, 1]), randomized or not.
        x: images, shape (N, C, H, W), values in [0, 1].
        y: integer labels, shape (N,).
        eps: radius of the L-inf ball, in (0, 1].
        n_queries: queries per image (default 5000, AutoAttack's).
        eot: noise draws each query's score is averaged over (default 20; 1 for a
            deterministic model, automatically).
        p_init: the initial share of pixels a square covers (default 0.8).
        loss: "margin" (default) or "ce".
        batch_size: images per run (default 256).
        keep_mode: attack the model in its current mode (default False: eval mode).

    Returns:
        SquareResult: ``x_adv`` (each image's best point, within eps), ``success``,
        ``initially_correct`` and the parameters used (``params["eot"]``: the draws run).

    Raises:
        AttackError: a bad ``eps``, ``n_queries``, ``eot`` or ``batch_size``, or images /
            labels the model does not take.

    Example:
        >>> import pni, torch
        >>> _ = torch.manual_seed(0)
        >>> model = pni.inject(pni.create_model("lenet5"), "W")
        >>> x, y = pni.load_dataset("mnist-sample", "test").subset(4).tensors()
        >>> result = pni.attacks.square(model, x, y, eps=0.1, n_queries=5, eot=2)
        >>> result.x_adv.shape, bool((result.x_adv - x).abs().max() <= 0.1 + 1e-6)
        (torch.Size([4, 1, 28, 28]), True)
    """
    from pyautoattack.square import SquareAttack

    eps = check_eps(eps)
    check_positive_int(n_queries, "n_queries")
    check_positive_int(eot, "eot")
    check_positive_int(batch_size, "batch_size")
    check_images(x, y, model)
    x, y = x.detach(), y.detach()
    x_adv = x.clone()
    success = torch.zeros(len(y), dtype=torch.bool, device=y.device)
    initially = torch.zeros(len(y), dtype=torch.bool, device=y.device)
    with frozen_parameters(model), attack_mode(model, keep_mode):
        draws = eot if (eot > 1 and len(y) and is_randomized(model, x)) else 1
        scores = EOTScores(model, draws)
        for start in range(0, len(y), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            attack = SquareAttack(scores, norm="Linf", n_queries=n_queries, eps=eps, p_init=p_init,
                                  n_restarts=1, seed=0, verbose=False, loss=loss, device=x.device)
            attack.init_hyperparam(xb)
            initially[start:start + len(yb)] = scores(xb).argmax(1) == yb
            if len(yb) == 1:  # pyautoattack squeezes a batch of one: attack it twice over
                _, best = attack.attack_single_run(xb.repeat(2, 1, 1, 1), yb.repeat(2))
                best = best[:1]
            else:
                _, best = attack.attack_single_run(xb, yb)
            best = torch.min(torch.max(best, xb - eps), xb + eps).clamp_(0.0, 1.0)
            x_adv[start:start + len(yb)] = best
            success[start:start + len(yb)] = scores(best).argmax(1) != yb
    params = {"eps": eps, "n_queries": n_queries, "eot": draws, "p_init": p_init, "loss": loss,
              "package": "pyautoattack"}
    return SquareResult(x_adv=x_adv.detach(), success=success, initially_correct=initially, params=params)


square_attack = square  # the name the builder below uses (its option is called ``square`` too)


# --- `pni eval` attack: square ------------------------------------------------------------

def _build_square(eps: float, **options: Any) -> tuple[Attack, dict[str, Any]]:
    settings = {"n_queries": DEFAULT_QUERIES, "eot": DEFAULT_SQUARE_EOT} | dict(options.get("square") or {})
    unknown = sorted(set(settings) - {"n_queries", "eot", "p_init", "loss", "batch_size"})
    if unknown:
        raise AttackError(f"unknown Square option(s) {', '.join(unknown)}; expected n_queries, eot, "
                          f"p_init, loss, batch_size")
    params = {"eps": eps, "package": "pyautoattack", **settings}
    return (lambda m, x, y: square_attack(m, x, y, eps, **settings)), params


register_attack(AttackSpec(
    "square", "Square-EOT", LINF_THREAT, _build_square, options=("square",),
    flags=(AttackFlag("--square-queries", "square", f"Square: queries per image (default {DEFAULT_QUERIES})",
                      key="n_queries"),
           AttackFlag("--square-eot", "square", f"Square: noise draws each query's score is averaged over "
                                                f"(default {DEFAULT_SQUARE_EOT}; 1 for a deterministic model)",
                      key="eot"))))
