"""Carlini & Wagner L2 attack (Eq. 4; the paper's Table 4), with EOT over the model's noise.

Minimizes ``||delta||_2^2 + c * f(x + delta)`` with ``f = max(Z_y - max_{j != y} Z_j, -kappa)``
on the logits ``Z``, in tanh space (``x + delta = (tanh(w) + 1) / 2`` stays in [0, 1]) with
Adam, and a binary search over ``c`` per sample: success -> upper bound ``c``, next ``c`` the
midpoint; failure -> lower bound ``c``, next ``c`` ten times larger while no upper bound is
known. The reported metric is the mean L2 of the successful perturbations and the success
rate. ``CW_PROFILES["paper"]`` is the paper's setting (10 Adam steps barely move an image);
``"strong"`` runs 1,000 steps with lr 0.01.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ._common import (
    AttackError,
    PerturbationResult,
    attack_mode,
    check_images,
    check_positive_int,
    frozen_parameters,
    input_gradient,
    class_margin,
    is_randomized,
)
from .registry import MIN_NORM_THREAT, Attack, AttackFlag, AttackSpec, register_attack
from .votes import HALF_GRAY_LEVEL, judge_examples, predict_votes, unmoved, vote_correctness

CW_PROFILES: dict[str, dict[str, Any]] = {
    "paper": {"c": 0.01, "lr": 5e-4, "steps": 10, "binary_search_steps": 9, "confidence": 0.0},
    "strong": {"c": 0.01, "lr": 0.01, "steps": 1000, "binary_search_steps": 9, "confidence": 0.0},
}

_TANH_SCALE = 1 - 1e-6  # keeps atanh finite at pixels 0 and 1


@dataclass
class CWResult(PerturbationResult):
    """What ``cw_l2`` returns. ``l2`` is ``||x_adv - x||_2`` per sample (0 where the attack
    failed: ``x_adv`` is then ``x``)."""

    params: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_l2(self) -> float:
        """Mean L2 norm of the successful perturbations (of initially correct samples)."""
        ok = self.success & self.initially_correct
        return float(self.l2[ok].mean()) if ok.any() else math.nan


def cw_l2(model: nn.Module, x: Tensor, y: Tensor, c: float = 0.01, lr: float = 5e-4, steps: int = 10,
          binary_search_steps: int = 9, confidence: float = 0.0, eot: int = 1, *,
          abort_early: bool = True, eot_batch: int | None = None, keep_mode: bool = False,
          votes: int = 10, verify: bool = True) -> CWResult:
    """C&W-L2 (Carlini & Wagner 2017; the paper's Eq. 4 and Table 4) with its defaults.

    Distance: L2, minimum-norm (no bound): minimizes ``||delta||_2^2 + c * f(x + delta)`` in
    tanh space with Adam and a per-sample binary search over ``c``. With ``eot`` > 1 the loss and
    the search's "is it adversarial" check use the expected logits over ``eot`` noise draws
    (C&W-EOT). The returned example counts as a success only if the majority vote over
    ``votes`` fresh draws misclassifies it (``votes.judge_examples``; the mean L2 is over those
    successes): one lucky draw during the search is not one, and on a randomized model neither
    is an example within half a gray level of its image (``votes.unmoved``: it is that image,
    judged by its own vote; a borderline image whose votes split would otherwise be "fooled"
    at distance zero). The model runs in eval mode and
    is left in its own mode; only input gradients are computed.

    Args:
        model: the classifier (images in [0, 1]), randomized or not.
        x: images, shape (N, C, H, W), values in [0, 1].
        y: integer labels, shape (N,).
        c: initial weight of the classification loss ``f``, > 0 (default 0.01, the paper's).
        lr: Adam's learning rate, > 0 (default 5e-4, the paper's).
        steps: Adam iterations per binary-search step (default 10, the paper's).
        binary_search_steps: searches over ``c`` (default 9, the paper's).
        confidence: the margin ``kappa`` of ``f``, >= 0 (default 0.0, the paper's).
        eot: noise draws the gradient of ``f`` is averaged over (default 1).
        abort_early: end a binary-search step when the loss stops falling, checked every
            ``steps // 10`` iterations as Carlini's code (default True).
        eot_batch: EOT draws per vectorized pass (default None: one per pass).
        keep_mode: attack the model in its current mode instead of eval mode (default False).
        votes: fresh noise draws the returned examples (and the clean images) are judged over
            (default 10; a deterministic model is run once).
        verify: on a randomized model, keep a point the search finds adversarial (on its EOT
            draws' mean logits) as the best only if the vote over ``votes`` other fresh draws
            misclassifies it too and it lies beyond half a gray level of its image, so the binary
            search raises ``c`` until its examples fool the vote (default True; False: the
            search's own check alone, as C&W-EOT without it, whose first crossings fresh draws
            often still classify correctly).

    Returns:
        CWResult: ``x_adv`` (``x`` where the search found nothing), per-sample ``success`` and
        ``initially_correct`` (judged over ``votes`` fresh draws), ``found`` (the search's own
        check), ``l2``; ``mean_l2`` (Table 4) and ``success_rate`` summarize them.

    Raises:
        AttackError: a bad ``c``, ``lr``, ``confidence``, ``steps``, ``binary_search_steps`` or
            ``eot``, or images / labels the model does not take.

    Example:
        >>> import pni, torch
        >>> _ = torch.manual_seed(0)
        >>> model = pni.inject(pni.create_model("lenet5"), "W")
        >>> x, y = pni.load_dataset("mnist-sample", "test").subset(8).tensors()
        >>> result = pni.attacks.cw_l2(model, x, y, steps=5, binary_search_steps=2)
        >>> result.x_adv.shape, result.l2.shape, result.success.dtype
        (torch.Size([8, 1, 28, 28]), torch.Size([8]), torch.bool)
    """
    if not isinstance(c, (int, float)) or not c > 0:
        raise AttackError(f"c must be a positive number, got {c!r}")
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise AttackError(f"lr must be a positive number, got {lr!r}")
    if not isinstance(confidence, (int, float)) or confidence < 0:
        raise AttackError(f"confidence must be a number >= 0, got {confidence!r}")
    check_positive_int(steps, "steps")
    check_positive_int(binary_search_steps, "binary_search_steps")
    check_positive_int(eot, "eot")
    check_positive_int(votes, "votes")
    check_images(x, y, model)
    params = {"c": float(c), "lr": float(lr), "steps": steps, "binary_search_steps": binary_search_steps,
              "confidence": float(confidence), "eot": eot, "abort_early": abort_early, "votes": votes,
              "verify": verify}
    x = x.detach()
    n = len(x)
    flat = (n, -1)
    with frozen_parameters(model), attack_mode(model, keep_mode):
        randomized = model.training or is_randomized(model, x)
        if eot > 1 and not randomized:
            eot = 1
        check_votes = votes if verify and randomized else 0   # the vote a kept point must fool
        lower = torch.zeros(n, device=x.device)
        upper = torch.full((n,), math.inf, device=x.device)
        const = torch.full((n,), float(c), device=x.device)
        best_l2 = torch.full((n,), math.inf, device=x.device)
        best_adv = x.clone()
        w0 = torch.atanh((2 * x - 1) * _TANH_SCALE)
        check_every = max(1, steps // 10)
        for _ in range(binary_search_steps):
            w = w0.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([w], lr=lr)
            found = torch.zeros(n, dtype=torch.bool, device=x.device)
            previous = math.inf

            def f_loss(logits: Tensor, labels: Tensor, const: Tensor = const) -> Tensor:
                return (const * class_margin(logits, labels).clamp(min=-confidence)).sum()

            for step in range(steps):
                tanh_w = torch.tanh(w.detach())
                x_adv = (tanh_w / _TANH_SCALE + 1) / 2
                x_adv = x_adv.clamp(0.0, 1.0)
                grad_f, logits = input_gradient(model, x_adv, y, eot, f_loss, eot_batch)
                delta = x_adv - x
                grad_x = grad_f + 2 * delta
                with torch.no_grad():
                    w.grad = grad_x * (1 - tanh_w ** 2) / (2 * _TANH_SCALE)
                    optimizer.step()
                    l2 = delta.reshape(flat).norm(dim=1)
                    margin = class_margin(logits, y)
                    adversarial = margin < -confidence if confidence > 0 else logits.argmax(1) != y
                    if check_votes:  # (a point within half a gray level of its image is that image)
                        adversarial = adversarial & ~unmoved(x, x_adv)
                        adversarial = _fools_the_vote(model, x_adv, y, adversarial & (l2 < best_l2),
                                                      check_votes) | (adversarial & (l2 >= best_l2))
                    better = adversarial & (l2 < best_l2)
                    best_l2 = torch.where(better, l2, best_l2)
                    best_adv[better] = x_adv[better]
                    found |= adversarial
                    if abort_early and step % check_every == 0:
                        loss = float((delta.reshape(flat).pow(2).sum(1)
                                      + const * margin.clamp(min=-confidence)).sum())
                        if loss > previous * 0.9999:
                            break
                        previous = loss
            upper = torch.where(found, torch.minimum(upper, const), upper)
            lower = torch.where(found, lower, torch.maximum(lower, const))
            const = torch.where(torch.isinf(upper), const * 10, (lower + upper) / 2)
        found = torch.isfinite(best_l2)
        initially_correct, fooled = judge_examples(model, x, best_adv, y, votes, randomized=randomized)
    l2 = (best_adv - x).reshape(flat).norm(dim=1)
    return CWResult(x_adv=best_adv.detach(), success=found & fooled, initially_correct=initially_correct,
                    l2=l2, found=found, params=params)


def cw_l2_profile(model: nn.Module, x: Tensor, y: Tensor, profile: str = "paper", **overrides: Any) -> CWResult:
    """``cw_l2`` with the settings of ``CW_PROFILES[profile]``, any of them overridden."""
    if profile not in CW_PROFILES:
        raise AttackError(f"unknown C&W profile {profile!r}; expected one of: {', '.join(CW_PROFILES)}")
    return cw_l2(model, x, y, **(CW_PROFILES[profile] | overrides))


def _fools_the_vote(model: nn.Module, x_adv: Tensor, y: Tensor, candidates: Tensor, votes: int) -> Tensor:
    """Of the ``candidates`` (bool, per sample), those whose majority vote over ``votes`` fresh
    draws misclassifies ``x_adv``; False elsewhere."""
    keep = torch.zeros_like(candidates)
    index = candidates.nonzero().flatten()
    if len(index):
        preds = predict_votes(model, x_adv[index].detach(), votes, len(index))
        keep[index] = ~vote_correctness(preds, y[index])[1]
    return keep


# --- `pni eval` attack: cw --------------------------------------------------------------

def _build_cw(cw_profile: str = "paper", cw: dict[str, Any] | None = None, **_: Any) -> tuple[Attack, dict[str, Any]]:
    if cw_profile not in CW_PROFILES:
        raise AttackError(f"unknown C&W profile {cw_profile!r}; expected one of: {', '.join(CW_PROFILES)}")
    settings = CW_PROFILES[cw_profile] | dict(cw or {})
    verify = inspect.signature(cw_l2).parameters["verify"].default   # recorded: the search that ran
    params = {"profile": cw_profile, "verify": verify, **settings, "threat": MIN_NORM_THREAT,
              "same_image_linf": HALF_GRAY_LEVEL}  # recorded: on a noisy model, closer is the image itself
    return (lambda m, x, y: cw_l2(m, x, y, **settings)), params


register_attack(AttackSpec(
    "cw", "C&W", MIN_NORM_THREAT, _build_cw, options=("cw_profile", "cw"),
    flags=(AttackFlag("--cw-profile", "cw_profile", "C&W-L2 settings: paper (c 0.01, lr 5e-4, 10 steps, "
                      "9 binary-search steps) or strong (1000 steps, lr 0.01)",
                      type=str, default="paper", choices=tuple(CW_PROFILES)),)))
