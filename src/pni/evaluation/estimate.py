"""How much work an evaluation, an audit or a certification is, in forward+backward passes
per image, and an up-front time estimate from this machine's measured pass rate: ``pni
eval``, ``pni audit`` and ``pni certify`` say before they start how long they will take (a
CIFAR evaluation under the honest protocol, EOT-PGD and AutoAttack-rand over votes, takes
hours on a CPU) and suggest ``--n`` (``--subset``).
``pni reproduce --dry-run`` counts its steps with the same passes. Estimates, not promises:
a forward pass is counted as a third of a forward+backward one."""
from __future__ import annotations

import sys
import time
from typing import Any

import torch
from torch import Tensor, nn


def attack_passes(attack: str, settings: dict[str, Any], steps: int, randomized: bool = True) -> float:
    """Forward+backward passes per image of one attack; ``settings`` has ``votes`` and
    ``attack_options`` as ``EvalSettings`` does (votes add forward passes). ``randomized``
    False: a deterministic model, which ``evaluate`` attacks with one draw per step (EOT-PGD
    is then PGD, AutoAttack-rand runs at ``eot_iter`` 1)."""
    votes = settings.get("votes", 1)
    options = settings.get("attack_options") or {}
    draws = (lambda k: k) if randomized else (lambda k: 1)
    if attack == "clean":
        return votes / 3
    if attack == "fgsm":
        return 1 + votes / 3
    if attack == "pgd":
        return steps + votes / 3
    if attack == "eot-pgd":
        return steps * draws(options.get("eot", 20)) + votes / 3
    if attack == "aa-rand":
        aa = options.get("aa") or {}
        return 2 * aa.get("n_iter", 100) * draws(aa.get("eot_iter", 20)) + votes / 3
    if attack == "cw":  # C&W-EOT: every step's gradient over its draws
        from ..attacks.cw import CW_PROFILES

        cw = CW_PROFILES[options.get("cw_profile", "paper")] | (options.get("cw") or {})
        return cw["steps"] * cw["binary_search_steps"] * draws(cw.get("eot", 1)) + votes / 3
    if attack == "square":  # forward passes only: one per query and draw
        from ..attacks.square import DEFAULT_QUERIES, DEFAULT_SQUARE_EOT

        square = options.get("square") or {}
        return (square.get("n_queries", DEFAULT_QUERIES) * draws(square.get("eot", DEFAULT_SQUARE_EOT)) / 3
                + votes / 3)
    if attack in ("zoo", "eot-zoo"):  # forward passes only: one per query and draw
        from ..attacks.zoo import EOT_ZOO_DRAWS

        zoo = options.get("zoo") or {}
        eot = zoo.get("eot", EOT_ZOO_DRAWS if attack == "eot-zoo" else 1)
        return zoo.get("steps", 1000) * (2 * zoo.get("coords", 128) + 1) * draws(eot) / 3 + votes / 3
    return steps


def evaluation_passes(settings: dict[str, Any], steps: int, randomized: bool = True,
                      reached: dict[str, float] | None = None) -> float:
    """Passes per image of a whole evaluation: every attack, every trial, both noise settings
    (with the noise off a pni model is deterministic: one draw per step, as ``evaluate`` runs
    it). ``randomized``: as ``attack_passes``. ``reached``: per attack, the share of the images
    it really works on (a cascaded attack: those still robust when it starts; ZOO: those the
    model classifies correctly, as it stops at once on the others), e.g. from an evaluation of
    the same model already done; default 1, every image. On a deterministic model an EOT
    attack run with its one-draw twin (EOT-ZOO with ZOO) is free: ``evaluate`` reuses the twin.
    """
    from ..attacks.budget import one_draw_twins

    reached = reached or {}
    attacks = settings["attacks"]
    twins = one_draw_twins(attacks, settings.get("cascade") or ())   # (they share their options)

    def per_trial(noisy: bool) -> float:
        return sum(attack_passes(a, settings, steps, noisy) * reached.get(a, 1.0) for a in attacks
                   if noisy or a not in twins)
    noise_off = per_trial(False) if settings.get("noise", True) else 0.0
    return (per_trial(randomized) + noise_off) * settings.get("trials", 1)


def measure_pass_rate(model: nn.Module, x: Tensor, rounds: int = 3) -> float:
    """Forward+backward images/s of ``model`` on ``x`` (a few images on the model's device):
    the best of ``rounds`` timings after a warm-up; the model's mode and gradients are restored."""
    was_training = model.training
    model.eval()
    timings = []
    try:
        for _ in range(rounds + 1):
            batch = x.detach().clone().requires_grad_(True)
            started = time.perf_counter()
            model(batch).sum().backward()
            if batch.is_cuda:
                torch.cuda.synchronize(batch.device)
            timings.append(time.perf_counter() - started)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return len(x) / max(min(timings[1:]), 1e-9)


def announce(what: str, seconds: float, images: int, passes: float, hint: str = "--num-images") -> str | None:
    """The line ``pni eval`` / ``pni audit`` print (to stderr) before a long run (over a
    minute); None for a short one."""
    if seconds < 60:
        return None
    line = (f"{what}: about {format_duration(seconds)} on this device ({images} images x {passes:,.0f} "
            f"forward+backward passes each)")
    if seconds > 600:
        line += f"; a smaller {hint} shortens it proportionally"
    print(line, file=sys.stderr, flush=True)
    return line


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def audit_seconds(settings: Any, n: int, pass_rate: float, surrogate_training: bool = True) -> float:
    """Seconds of ``pni audit`` (an ``AuditSettings``) on ``n`` images at ``pass_rate``
    forward+backward images/s, counting only the items in ``settings.items``: the PGD and FGSM
    passes items 1, 2 and 4 share, item 3's unbounded PGD, item 4's random points, item 5's
    eps sweep, item 6's steps sweep, item 7's EOT sweep, and item 2's score-based black box
    and (``surrogate_training``) the transfer surrogate's training."""
    a = settings
    items = set(getattr(a, "items", (1, 2, 3, 4, 5, 6, 7)))
    eps_count = len(a.eps_values) if a.eps_values else 6
    per_trial = {3: a.unbounded_steps, 5: a.steps * eps_count, 6: sum(a.steps_values),
                 7: a.steps * sum(a.eot_ks)}                                    # passes per image and trial
    once = {4: a.random_n * a.random_samples / (3 * n), 2: a.score_n * a.score_queries / (3 * n)}
    passes = sum(v for item, v in per_trial.items() if item in items)
    if items & {1, 2, 4}:  # PGD, FGSM and the transfer examples, shared by items 1, 2 and 4
        passes += a.steps * 3
    passes = passes * a.trials + sum(v for item, v in once.items() if item in items)
    surrogate = (a.surrogate_train_n or 10000) * a.surrogate_epochs if 2 in items and surrogate_training else 0
    return (n * passes + surrogate) / pass_rate


def certify_seconds(images: int, n0: int, n: int, pass_rate: float) -> float:
    """Seconds of ``pni certify`` on ``images`` images at ``pass_rate`` forward+backward
    images/s: ``n0 + n`` noisy forward passes per image (Cohen et al.'s CERTIFY), each a
    third of a forward+backward one."""
    return images * (n0 + n) / (3 * pass_rate)


def sample_images(data: Any, device: Any, k: int = 16) -> Tensor:
    """Up to ``k`` images of a pni Dataset (or an ``(images, labels)`` pair) on ``device``."""
    images = data.subset(min(k, len(data))).tensors()[0] if hasattr(data, "subset") else data[0][:k]
    return images.to(device)
