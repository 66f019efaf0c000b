"""ZOO (Chen et al. 2017): a zeroth-order, score-based black-box attack (the paper's Table 5).

ZOO-ADAM, untargeted: minimizes ``||delta||_2^2 + c * f(x + delta)`` with
``f = max(log p_y - max_{j != y} log p_j, -kappa)`` on the model's output scores only.
Every iteration picks ``coords`` random coordinates per image, estimates each partial
derivative by a symmetric difference ``(F(x + h e_i) - F(x - h e_i)) / 2h`` and moves that
coordinate by its own Adam step (each coordinate keeps its own moments and step count).
It works in [0, 1] pixel space, clipping to it (and to an optional L-inf ball of radius
``eps``). The ``2 * coords + 1`` queries of an iteration (and of ``batch_size`` images) go
through one forward pass: with weight noise they share one noise draw, as a batched query
would. Everything runs under ``torch.no_grad()``: no backward pass, ever. In an evaluation
with a partial file each finished batch, and the state each iteration leaves, is kept
(``pni.resumable``): a stopped ZOO resumes at its next iteration with the same results.

EOT-ZOO (``eot`` > 1, registered as "eot-zoo") averages every query's scores over ``eot``
noise draws: on per-query noise (PNI-A-a, A-b) a single draw's finite differences are mostly
noise, so ZOO alone says little about such a model. Either way the returned example is a
success only if the majority vote over ``votes`` fresh draws misclassifies it, and on a
randomized model never at a point within half a gray level of its image (that point is the
image, judged by its own vote).
"""
from __future__ import annotations

import inspect
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
    is_randomized,
)
from ..resumable import resumable_batches, resumable_chain
from .registry import LINF_THREAT, Attack, AttackFlag, AttackSpec, register_attack
from .votes import HALF_GRAY_LEVEL, judge_examples, unmoved


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
        early_stop: bool = True, keep_mode: bool = False, eot: int = 1, votes: int = 10) -> ZooResult:
    """ZOO-ADAM (Chen et al. 2017; the paper's Table 5), untargeted, from output scores only.

    Distance: L2 (minimizes ``||delta||_2^2 + c * f(x + delta)``), optionally also bounded in
    L-inf by ``eps``. Partial derivatives are symmetric finite differences on ``coords`` random
    coordinates per iteration, each moved by its own Adam step; no backward pass is ever run.
    The model is queried in eval mode and left in its own mode.

    Args:
        model: the classifier (images in [0, 1]); only its outputs are used.
        x: images, shape (N, C, H, W), values in [0, 1].
        y: integer labels, shape (N,).
        steps: iterations per image (default 1000).
        coords: coordinates estimated per iteration and image (default 128).
        lr: Adam's step in pixel units, > 0 (default 0.01).
        h: finite-difference step, > 0 (default 1e-4).
        c: weight of the classification loss against the squared L2 distance (default 10.0).
        confidence: the margin ``kappa`` of ``f`` on log-probabilities, >= 0 (default 0.0).
        eps: L-inf bound of the perturbation, in (0, 1] (default None: unbounded).
        beta1: Adam's first-moment decay (default 0.9).
        beta2: Adam's second-moment decay (default 0.999).
        batch_size: images attacked together, their queries in one forward pass (default 8).
        early_stop: stop attacking an image once it is misclassified and return that point;
            False runs every step and returns the smallest-L2 adversarial point met (default True).
        keep_mode: query the model in its current mode instead of eval mode (default False).
        eot: noise draws every query's scores are averaged over (default 1: ZOO as published;
            EOT-ZOO, the honest counterpart on per-query noise, uses more): the finite
            differences and the "is it fooled" check then use the expected scores. A model
            whose two passes agree is queried once per point (the draws would all be equal).
        votes: fresh noise draws the returned examples (and the clean images) are judged over
            (default 10; a deterministic model is run once).

    Returns:
        ZooResult: ``x_adv``, per-sample ``success`` and ``initially_correct`` (judged over
        ``votes`` fresh draws), ``found`` (the search's own check), ``l2`` and ``queries``
        (images scored, each draw counted); ``success_rate`` is Table 5's metric.

    Raises:
        AttackError: a bad ``steps``, ``coords``, ``batch_size``, ``lr``, ``h``, ``c``,
            ``confidence`` or ``eps``, or images / labels the model does not take.

    Example:
        >>> import pni, torch
        >>> _ = torch.manual_seed(0)
        >>> model = pni.create_model("lenet5")
        >>> x, y = pni.load_dataset("mnist-sample", "test").subset(4).tensors()
        >>> result = pni.attacks.zoo(model, x, y, steps=5, coords=16, eps=0.1)
        >>> result.x_adv.shape, bool((result.x_adv - x).abs().max() <= 0.1 + 1e-6)
        (torch.Size([4, 1, 28, 28]), True)
    """
    check_images(x, y, model)
    check_positive_int(steps, "steps")
    check_positive_int(coords, "coords")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(eot, "eot")
    check_positive_int(votes, "votes")
    for name, value in (("lr", lr), ("h", h), ("c", c)):
        if not isinstance(value, (int, float)) or not value > 0:
            raise AttackError(f"{name} must be a positive number, got {value!r}")
    if not isinstance(confidence, (int, float)) or confidence < 0:
        raise AttackError(f"confidence must be a number >= 0, got {confidence!r}")
    if eps is not None:
        eps = check_eps(eps)
    params = {"steps": steps, "coords": coords, "lr": float(lr), "h": float(h), "c": float(c),
              "confidence": float(confidence), "eps": eps, "beta1": beta1, "beta2": beta2,
              "early_stop": early_stop, "eot": eot, "votes": votes}
    with attack_mode(model, keep_mode):
        if eot > 1:
            randomized = bool(len(x)) and is_randomized(model, x)
            if not randomized:  # one draw is every draw: EOT-ZOO is ZOO
                params = {**params, "eot": 1}
        else:  # (checked off the random stream: ZOO's draws stay those it always made)
            with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
                randomized = bool(len(x)) and is_randomized(model, x)
        starts = range(0, len(x), batch_size)  # each batch kept as it finishes in an evaluation (resume)
        parts = resumable_batches(len(starts), lambda i: _zoo_batch(
            model, x[starts[i]:starts[i] + batch_size].detach(), y[starts[i]:starts[i] + batch_size], params,
            randomized), device=x.device)
        if parts:
            best = torch.cat([p[0] for p in parts])
            initially_correct, fooled = judge_examples(model, x.detach(), best, y, votes, randomized=randomized)
    if not parts:
        empty = torch.zeros(0, dtype=torch.bool, device=x.device)
        return ZooResult(x_adv=x.detach().clone(), success=empty, initially_correct=empty,
                         l2=torch.zeros(0, device=x.device),
                         queries=torch.zeros(0, dtype=torch.long, device=x.device), params=params)
    x_adv, found, _, l2, queries = (torch.cat([p[i] for p in parts]) for i in range(5))
    return ZooResult(x_adv=x_adv, success=found & fooled, initially_correct=initially_correct, l2=l2,
                     queries=queries, found=found, params=params)


def _zoo_batch(model: nn.Module, x: Tensor, y: Tensor, p: dict[str, Any], randomized: bool) -> tuple[Tensor, ...]:
    """ZOO-ADAM on one batch: best examples, success, initially correct, L2, queries. On a
    ``randomized`` model every image is attacked (one draw's verdict on it decides nothing;
    the vote does, later), and a point within half a gray level of its image
    (``votes.unmoved``) is never a success: it is the image."""
    n, shape = len(x), x.shape[1:]
    x0 = x.reshape(n, -1)
    dim = x0.shape[1]
    k = min(p["coords"], dim)
    eps, h, c, kappa = p["eps"], p["h"], p["c"], p["confidence"]
    low = x0.sub(eps).clamp(min=0.0) if eps is not None else torch.zeros_like(x0)
    high = x0.add(eps).clamp(max=1.0) if eps is not None else torch.ones_like(x0)

    def scores(images: Tensor) -> Tensor:   # the expected logits over p["eot"] draws
        total = model(images)
        for _ in range(p["eot"] - 1):
            total = total + model(images)
        return total / p["eot"]

    initially_correct = scores(x).argmax(1) == y
    if randomized:  # one draw's verdict on the clean image decides nothing: the vote does, so attack all
        initially_correct = torch.ones_like(initially_correct)
    state = {"adv": x0.clone(), "best": x0.clone(), "best_l2": torch.where(initially_correct, math.inf, 0.0),
             "success": ~initially_correct,
             "queries": torch.full((n,), p["eot"], dtype=torch.long, device=x.device),
             "m": torch.zeros_like(x0), "v": torch.zeros_like(x0), "t": torch.zeros_like(x0),
             "active": initially_correct.clone()}
    rows = torch.arange(n, device=x.device)

    def iteration(_: int, s: dict[str, Tensor]) -> dict[str, Tensor]:
        adv, best, best_l2, success, queries, active = (s[k] for k in ("adv", "best", "best_l2", "success",
                                                                         "queries", "active"))
        idx_act = rows[active]
        b = len(idx_act)
        if b == 0:   # every image stopped: the rest of the iterations do nothing
            return s
        base = adv[idx_act]
        chosen = torch.rand(b, dim, device=x.device).argsort(1)[:, :k]       # (b, k) coordinates
        step = torch.full((b, k, 1), h, device=x.device, dtype=x.dtype)
        plus = base.unsqueeze(1).repeat(1, k, 1).scatter_add_(2, chosen[:, :, None], step)
        minus = base.unsqueeze(1).repeat(1, k, 1).scatter_add_(2, chosen[:, :, None], -step)
        q = torch.cat([base.unsqueeze(1), plus, minus], dim=1)               # (b, 2k+1, dim)
        logits = scores(q.reshape(-1, *shape)).reshape(b, 2 * k + 1, -1)
        queries[idx_act] += (2 * k + 1) * p["eot"]
        labels = y[idx_act].repeat_interleave(2 * k + 1)
        loss = _objective(logits.reshape(b * (2 * k + 1), -1), labels, q.reshape(b * (2 * k + 1), -1),
                          x0[idx_act].repeat_interleave(2 * k + 1, dim=0), c, kappa).reshape(b, -1)

        # the current point (query 0) is scored in the same pass: record successes
        fooled = logits[:, 0].argmax(1) != y[idx_act]
        if randomized:
            fooled &= ~unmoved(x0[idx_act], base)
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
                return s

        grad = (loss[:, 1:1 + k] - loss[:, 1 + k:]) / (2 * h)                 # (b, k)
        _adam_coordinates(adv, s["m"], s["v"], s["t"], idx_act, chosen, grad, p["lr"], p["beta1"], p["beta2"])
        adv[idx_act] = torch.max(torch.min(adv[idx_act], high[idx_act]), low[idx_act])
        return s

    # each iteration's state kept in an evaluation with a partial file: a stopped batch resumes mid-way
    state = resumable_chain(p["steps"], iteration, state, device=x.device)
    adv, best, best_l2, success, queries, active = (state[k] for k in ("adv", "best", "best_l2", "success",
                                                                         "queries", "active"))

    # the final iterate of the images still running
    idx_act = rows[active]
    if len(idx_act):
        fooled = scores(adv[idx_act].reshape(-1, *shape)).argmax(1) != y[idx_act]
        if randomized:
            fooled &= ~unmoved(x0[idx_act], adv[idx_act])
        queries[idx_act] += p["eot"]
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


# --- `pni eval` attack: zoo (L-inf bounded at eps there) -------------------------------

EOT_ZOO_DRAWS = 10   # EOT-ZOO's draws per query (its scores averaged over them)


def _build_zoo(eps: float, eot_draws: int = 1, **options: Any) -> tuple[Attack, dict[str, Any]]:
    settings = {"eps": eps, "eot": eot_draws} | dict(options.get("zoo") or {})  # "zoo": overrides of zoo()
    defaults = {k: v.default for k, v in inspect.signature(zoo).parameters.items()
                if v.default is not inspect.Parameter.empty}
    params = defaults | settings | {"same_image_linf": HALF_GRAY_LEVEL}  # recorded as C&W's
    return (lambda m, x, y: zoo(m, x, y, **settings)), params


def _build_eot_zoo(eps: float, **options: Any) -> tuple[Attack, dict[str, Any]]:
    return _build_zoo(eps, EOT_ZOO_DRAWS, **options)


_ZOO_STEPS = AttackFlag("--zoo-steps", "zoo", "ZOO iterations of 128 coordinates (default 1000; slow: 257 "
                        "queries each)", key="steps")
register_attack(AttackSpec("zoo", "ZOO", LINF_THREAT, _build_zoo, options=("zoo",), flags=(_ZOO_STEPS,)))
register_attack(AttackSpec("eot-zoo", "EOT-ZOO", LINF_THREAT, _build_eot_zoo, options=("zoo",),
                           flags=(_ZOO_STEPS,), one_draw_of="zoo"))
