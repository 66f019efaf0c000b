"""ZOO (Chen et al. 2017): a zeroth-order, score-based black-box attack (the paper's Table 5).

ZOO-ADAM, untargeted: minimizes ``||delta||_2^2 + c * f(x + delta)`` with
``f = max(log p_y - max_{j != y} log p_j, -kappa)`` on the model's output scores only.
Every iteration picks ``coords`` random coordinates per image, estimates each partial
derivative by a symmetric difference ``(F(x + h e_i) - F(x - h e_i)) / 2h`` and moves that
coordinate by its own Adam step (each coordinate keeps its own moments and step count).
It works in [0, 1] pixel space, clipping to it (and to an optional L-inf ball of radius
``eps``). The ``2 * coords + 1`` queries of an iteration (and of ``batch_size`` images) go
through one forward pass: with weight noise they share one noise draw, as a batched query
would. Everything runs under ``torch.no_grad()``: no backward pass, ever.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import (
    AttackError,
    PerturbationResult,
    attack_mode,
    check_eps,
    check_images,
    check_positive_int,
    class_margin,
)


@dataclass
class ZooResult(PerturbationResult):
    """What ``zoo`` returns; ``queries`` are the model queries spent per image (one query =
    one image scored). ``success_rate`` is the paper's Table 5 metric."""

    queries: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    params: dict[str, Any] = field(default_factory=dict)


def _objective(logits: Tensor, y: Tensor, queries: Tensor, x: Tensor, c: float,
               confidence: float) -> Tensor:
    """``||q - x||^2 + c * max(log p_y - max_{j != y} log p_j, -kappa)`` per query."""
    margin = class_margin(F.log_softmax(logits.float(), dim=1), y)
    return (queries - x).pow(2).sum(1) + c * margin.clamp(min=-confidence)


@torch.no_grad()
def zoo(model: nn.Module, x: Tensor, y: Tensor, steps: int = 1000, coords: int = 128, lr: float = 0.01,
        h: float = 1e-4, c: float = 10.0, confidence: float = 0.0, eps: float | None = None,
        beta1: float = 0.9, beta2: float = 0.999, batch_size: int = 8,
        early_stop: bool = True, keep_mode: bool = False) -> ZooResult:
    """ZOO-ADAM, untargeted, on ``x`` (images in [0, 1]) with labels ``y``.

    ``steps`` iterations of ``coords`` coordinates each (per image); ``lr`` is Adam's step
    in pixel units; ``h`` the finite-difference step; ``c`` weighs the classification loss
    against the squared L2 distance; ``eps`` (optional) bounds the perturbation in L-inf.
    ``early_stop`` stops attacking an image as soon as it is misclassified (that point is
    returned); otherwise the attack runs all steps and returns the adversarial point of
    smallest L2 it met. ``batch_size`` images are attacked together. The model is queried in
    eval mode and left in its own mode (``keep_mode=True``: its current mode).
    """
    check_images(x, y, model)
    check_positive_int(steps, "steps")
    check_positive_int(coords, "coords")
    check_positive_int(batch_size, "batch_size")
    for name, value in (("lr", lr), ("h", h), ("c", c)):
        if not isinstance(value, (int, float)) or not value > 0:
            raise AttackError(f"{name} must be a positive number, got {value!r}")
    if not isinstance(confidence, (int, float)) or confidence < 0:
        raise AttackError(f"confidence must be a number >= 0, got {confidence!r}")
    if eps is not None:
        eps = check_eps(eps)
    params = {"steps": steps, "coords": coords, "lr": float(lr), "h": float(h), "c": float(c),
              "confidence": float(confidence), "eps": eps, "beta1": beta1, "beta2": beta2,
              "early_stop": early_stop}
    with attack_mode(model, keep_mode):
        parts = [_zoo_batch(model, x[s:s + batch_size].detach(), y[s:s + batch_size], params)
                 for s in range(0, len(x), batch_size)]
    if not parts:
        empty = torch.zeros(0, dtype=torch.bool, device=x.device)
        return ZooResult(x_adv=x.detach().clone(), success=empty, initially_correct=empty,
                         l2=torch.zeros(0, device=x.device),
                         queries=torch.zeros(0, dtype=torch.long, device=x.device), params=params)
    x_adv, success, initially_correct, l2, queries = (torch.cat([p[i] for p in parts]) for i in range(5))
    return ZooResult(x_adv=x_adv, success=success, initially_correct=initially_correct, l2=l2,
                     queries=queries, params=params)


def _zoo_batch(model: nn.Module, x: Tensor, y: Tensor, p: dict[str, Any]) -> tuple[Tensor, ...]:
    n, shape = len(x), x.shape[1:]
    x0 = x.reshape(n, -1)
    dim = x0.shape[1]
    k = min(p["coords"], dim)
    eps, h, c, kappa = p["eps"], p["h"], p["c"], p["confidence"]
    low = x0.sub(eps).clamp(min=0.0) if eps is not None else torch.zeros_like(x0)
    high = x0.add(eps).clamp(max=1.0) if eps is not None else torch.ones_like(x0)

    initially_correct = model(x).argmax(1) == y
    adv = x0.clone()
    best = x0.clone()
    best_l2 = torch.where(initially_correct, math.inf, 0.0)
    success = ~initially_correct
    queries = torch.ones(n, dtype=torch.long, device=x.device)
    m = torch.zeros_like(x0)
    v = torch.zeros_like(x0)
    t = torch.zeros_like(x0)
    active = initially_correct.clone()
    rows = torch.arange(n, device=x.device)

    for _ in range(p["steps"]):
        idx_act = rows[active]
        b = len(idx_act)
        if b == 0:
            break
        base = adv[idx_act]
        chosen = torch.rand(b, dim, device=x.device).argsort(1)[:, :k]       # (b, k) coordinates
        step = torch.full((b, k, 1), h, device=x.device, dtype=x.dtype)
        plus = base.unsqueeze(1).repeat(1, k, 1).scatter_add_(2, chosen[:, :, None], step)
        minus = base.unsqueeze(1).repeat(1, k, 1).scatter_add_(2, chosen[:, :, None], -step)
        q = torch.cat([base.unsqueeze(1), plus, minus], dim=1)               # (b, 2k+1, dim)
        logits = model(q.reshape(-1, *shape)).reshape(b, 2 * k + 1, -1)
        queries[idx_act] += 2 * k + 1
        labels = y[idx_act].repeat_interleave(2 * k + 1)
        loss = _objective(logits.reshape(b * (2 * k + 1), -1), labels, q.reshape(b * (2 * k + 1), -1),
                          x0[idx_act].repeat_interleave(2 * k + 1, dim=0), c, kappa).reshape(b, -1)

        # the current point (query 0) is scored in the same pass: record successes
        fooled = logits[:, 0].argmax(1) != y[idx_act]
        l2 = (base - x0[idx_act]).norm(dim=1)
        better = fooled & (l2 < best_l2[idx_act])
        best[idx_act[better]] = base[better]
        best_l2[idx_act[better]] = l2[better]
        success[idx_act[fooled]] = True
        if p["early_stop"]:
            keep = ~fooled
            active[idx_act[fooled]] = False
            idx_act, base, chosen, loss = idx_act[keep], base[keep], chosen[keep], loss[keep]
            if len(idx_act) == 0:
                continue

        grad = (loss[:, 1:1 + k] - loss[:, 1 + k:]) / (2 * h)                 # (b, k)
        _adam_coordinates(adv, m, v, t, idx_act, chosen, grad, p["lr"], p["beta1"], p["beta2"])
        adv[idx_act] = torch.max(torch.min(adv[idx_act], high[idx_act]), low[idx_act])

    # the final iterate of the images still running
    idx_act = rows[active]
    if len(idx_act):
        fooled = model(adv[idx_act].reshape(-1, *shape)).argmax(1) != y[idx_act]
        queries[idx_act] += 1
        l2 = (adv[idx_act] - x0[idx_act]).norm(dim=1)
        better = fooled & (l2 < best_l2[idx_act])
        best[idx_act[better]] = adv[idx_act[better]]
        success[idx_act[fooled]] = True
    x_adv = best.reshape(x.shape)
    l2 = (best - x0).norm(dim=1)
    return x_adv, success, initially_correct, l2, queries


def _adam_coordinates(adv: Tensor, m: Tensor, v: Tensor, t: Tensor, rows: Tensor, cols: Tensor,
                      grad: Tensor, lr: float, beta1: float, beta2: float) -> None:
    """Coordinate-wise Adam (ZOO-ADAM): updates ``adv[rows, cols]`` in place."""
    r = rows[:, None].expand_as(cols)
    t[r, cols] += 1
    m[r, cols] = beta1 * m[r, cols] + (1 - beta1) * grad
    v[r, cols] = beta2 * v[r, cols] + (1 - beta2) * grad * grad
    step_t = t[r, cols]
    m_hat = m[r, cols] / (1 - beta1 ** step_t)
    v_hat = v[r, cols] / (1 - beta2 ** step_t)
    adv[r, cols] -= lr * m_hat / (v_hat.sqrt() + 1e-8)
