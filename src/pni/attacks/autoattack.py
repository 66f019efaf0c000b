"""AutoAttack (Croce & Hein 2020) through the ``pyautoattack`` package, judged over noise draws.

``version="standard"`` (APGD-CE, APGD-T, FAB-T, Square) runs pyautoattack's
``run_standard_evaluation``. ``version="rand"``, the version for randomized defenses, is
APGD-CE then APGD-DLR with EOT over 20 draws and one restart: pni runs pyautoattack's
APGD objects, configured by ``AutoAttack(version="rand")``, in their highest-loss mode
(``perturb(best_loss=True)``), so that every image gets its strongest point, not only the
images some single noisy pass happened to misclassify; APGD-DLR runs on the images still
robust after APGD-CE, and each image keeps the point it does worst on.

Either way the robust accuracy is recomputed on the returned examples over ``votes``
fresh noise draws: a single stochastic pass (AutoAttack's own judgement) counts a lucky
draw as a success, and pyautoattack's protocol returns the clean image wherever no single
pass was fooled. ``reported_correct`` keeps the one-pass view for comparison.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from functools import lru_cache
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ._common import (AttackError, attack_mode, check_eps, check_images, check_positive_int, frozen_parameters,
                      is_randomized)
from .registry import LINF_THREAT, Attack, AttackFlag, AttackSpec, register_attack
from .votes import VotedResult, predict_votes, vote_correctness

VERSIONS = ("rand", "standard")


@dataclass
class AutoAttackResult(VotedResult):
    """What ``autoattack`` returns: the adversarial examples, their correctness over
    ``votes`` noise draws (``fraction``, majority ``correct``) and in one stochastic pass."""

    # (N,) bool: one stochastic pass (pyautoattack's own flags for 'standard')
    reported_correct: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.bool))
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def reported_accuracy(self) -> float:
        """The robust accuracy pyautoattack reports (one stochastic pass)."""
        return float(self.reported_correct.float().mean()) if len(self.correct) else math.nan

    @property
    def robust_accuracy(self) -> float:
        """Expected robust accuracy over the noise draws: the number to quote."""
        return self.accuracy

    def per_sample(self) -> dict[str, Tensor]:
        return {"reported_correct": self.reported_correct}


@contextlib.contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    """Silences pyautoattack's logger, warnings and prints unless ``verbose``."""
    if verbose:
        yield
        return
    logger = logging.getLogger("auto-attack")
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
        logger.propagate = propagate


@lru_cache(maxsize=None)
def published_budget(version: str = "rand") -> dict[str, Any]:
    """The budget pyautoattack's ``AutoAttack(version=...)`` sets (read from the package, not
    copied): the attacks run, APGD's iterations, restarts and EOT draws ('rand': APGD-CE +
    APGD-DLR, 100 iterations, 1 restart, EOT 20)."""
    from pyautoattack import AutoAttack

    with _quiet(False):
        adversary = AutoAttack(nn.Identity(), eps=8 / 255, version=version, device="cpu")
    return {"attacks": ",".join(adversary.attacks_to_run), "n_iter": int(adversary.apgd.n_iter),
            "n_restarts": int(adversary.apgd.n_restarts), "eot_iter": int(adversary.apgd.eot_iter)}


def _set_iterations(apgd: Any, n_iter: int) -> None:
    """APGD's iteration count and the checkpoint schedule pyautoattack derives from it."""
    apgd.n_iter = apgd.n_iter_orig = n_iter
    apgd.n_iter_2 = max(int(0.22 * n_iter), 1)
    apgd.n_iter_min = max(int(0.06 * n_iter), 1)
    apgd.size_decr = max(int(0.03 * n_iter), 1)


def autoattack(model: nn.Module, x: Tensor, y: Tensor, eps: float, version: str = "rand", *,
               votes: int = 20, seed: int | None = None, batch_size: int = 256,
               n_iter: int | None = None, n_restarts: int | None = None, eot_iter: int | None = None,
               verbose: bool = False, keep_mode: bool = False) -> AutoAttackResult:
    """L-inf AutoAttack (Croce & Hein 2020): the adaptive check beyond the paper's PGD tables.

    Distance: L-inf. Runs ``pyautoattack.AutoAttack(version=...)`` at radius ``eps`` ('rand':
    APGD-CE then APGD-DLR with EOT, each image keeping its strongest point; 'standard':
    APGD-CE, APGD-T, FAB-T, Square), then judges the returned examples over ``votes`` fresh
    noise draws (``predict_votes``) instead of one lucky stochastic pass. The model runs in
    eval mode and is left in its own mode; its noise switch is used as it is.

    Args:
        model: the classifier (images in [0, 1]), randomized or not.
        x: images, shape (N, C, H, W), values in [0, 1].
        y: integer labels, shape (N,).
        eps: radius of the L-inf ball, in (0, 1] (8/255 on CIFAR-10).
        version: "rand" (for randomized defenses) or "standard" (default "rand").
        votes: noise draws every returned example is judged over (default 20).
        seed: seed of the 'standard' run, which reseeds torch's global generator (default None:
            drawn from it, so seeded trials differ and repeat); 'rand' uses the global generator.
        batch_size: images per batch (default 256).
        n_iter: APGD and FAB iterations (default None: the version's, 100).
        n_restarts: APGD restarts (default None: the version's, 1).
        eot_iter: APGD's EOT draws (default None: the version's, 20 in 'rand', 1 in 'standard').
        verbose: let pyautoattack print and log (default False: silenced).
        keep_mode: attack the model in its current mode instead of eval mode (default False).

    Returns:
        AutoAttackResult: ``x_adv``, per-sample ``fraction`` of correct draws and majority
        ``correct``; ``robust_accuracy`` (the number to quote) and ``reported_accuracy``
        (pyautoattack's one-pass view).

    Raises:
        AttackError: an unknown ``version``, a bad ``eps``, ``votes``, ``batch_size``,
            ``n_iter``, ``n_restarts`` or ``eot_iter``, or images / labels the model does not take.

    Example:
        >>> import pni, torch
        >>> _ = torch.manual_seed(0)
        >>> model = pni.inject(pni.create_model("lenet5"), "W")
        >>> x, y = pni.load_dataset("mnist-sample", "test").subset(4).tensors()
        >>> result = pni.attacks.autoattack(model, x, y, eps=0.1, n_iter=2, eot_iter=2, votes=3)
        >>> result.x_adv.shape, result.correct.shape, 0.0 <= result.robust_accuracy <= 1.0
        (torch.Size([4, 1, 28, 28]), torch.Size([4]), True)
    """
    from pyautoattack import AutoAttack

    if version not in VERSIONS:
        raise AttackError(f"unknown AutoAttack version {version!r}; expected one of: {', '.join(VERSIONS)}")
    eps = check_eps(eps)
    check_images(x, y, model)
    check_positive_int(votes, "votes")
    check_positive_int(batch_size, "batch_size")
    for name, value in (("n_iter", n_iter), ("n_restarts", n_restarts), ("eot_iter", eot_iter)):
        if value is not None:
            check_positive_int(value, name)
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,)))
    x, y = x.detach(), y.detach()
    with _quiet(verbose):
        adversary = AutoAttack(model, eps=eps, version=version, seed=seed, device=x.device)
        adversary.verbose = verbose
        if n_iter is not None:
            for apgd in (adversary.apgd, adversary.apgd_targeted):
                _set_iterations(apgd, n_iter)
            adversary.fab.n_iter = n_iter
        if n_restarts is not None:
            adversary.apgd.n_restarts = n_restarts
        if eot_iter is not None:
            adversary.apgd.eot_iter = eot_iter
        params = {"version": version, "eps": eps, "attacks": ",".join(adversary.attacks_to_run),
                  "n_iter": adversary.apgd.n_iter, "n_restarts": adversary.apgd.n_restarts,
                  "eot_iter": adversary.apgd.eot_iter, "votes": votes}
        with frozen_parameters(model), attack_mode(model, keep_mode):
            # a deterministic model (vanilla AT, a PNI model with its noise off) gives the same
            # gradient at every draw: one draw per step computes the same average
            if adversary.apgd.eot_iter > 1 and len(y) and not model.training and not is_randomized(model, x):
                adversary.apgd.eot_iter = 1
                params["eot_iter_run"] = 1
            if not len(y):
                x_adv, reported = x.clone(), torch.ones(0, dtype=torch.bool, device=y.device)
                fraction, correct = reported.float(), reported
            elif version == "standard":
                params["seed"] = seed
                x_adv, y_adv = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
                reported = y_adv == y
                fraction, correct = vote_correctness(predict_votes(model, x_adv, votes, batch_size), y)
            else:
                x_adv, fraction, correct = _highest_loss_apgd(adversary, model, x, y, votes, batch_size)
                reported = predict_votes(model, x_adv, 1, batch_size)[0] == y
    return AutoAttackResult(x_adv=x_adv.detach(), fraction=fraction, correct=correct,
                            reported_correct=reported, params=params)


def _highest_loss_apgd(adversary: Any, model: nn.Module, x: Tensor, y: Tensor, votes: int,
                       batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """APGD-CE on every image, then APGD-DLR on those still robust on some draw (the cascade:
    an image no draw classifies correctly has nothing left to lose), each in highest-loss
    mode; every image keeps the point whose draws are least often correct."""
    x_adv = x.clone()
    fraction = torch.full((len(y),), math.inf, device=x.device)
    correct = torch.ones(len(y), dtype=torch.bool, device=x.device)
    apgd = adversary.apgd
    for attack in adversary.attacks_to_run:
        loss = {"apgd-ce": "ce", "apgd-dlr": "dlr"}[attack]
        todo = (fraction > 0).nonzero().flatten()
        for start in range(0, len(todo), batch_size):
            idx = todo[start:start + batch_size]
            apgd.loss = loss
            candidate = apgd.perturb(x[idx], y[idx], best_loss=True).detach()
            frac, maj = vote_correctness(predict_votes(model, candidate, votes, batch_size), y[idx])
            better = frac < fraction[idx]
            x_adv[idx[better]] = candidate[better]
            fraction[idx[better]] = frac[better]
            correct[idx[better]] = maj[better]
    return x_adv, fraction, correct


# --- `pni eval` attacks: aa-rand, aa-standard -------------------------------------------

def _build_autoattack(version: str) -> Callable[..., tuple[Attack, dict[str, Any]]]:
    def build(eps: float, aa: dict[str, Any] | None = None, **_: Any) -> tuple[Attack, dict[str, Any]]:
        settings = dict(aa or {})
        params = {"eps": eps, "version": version, "package": "pyautoattack", **published_budget(version)}
        params |= {k: v for k, v in settings.items() if k in ("n_iter", "n_restarts", "eot_iter")}
        # votes here only pick each image's strongest point; the evaluation judges it anew
        return (lambda m, x, y: autoattack(m, x, y, eps, version, **({"votes": 10} | settings))), params
    return build


_AA_ITERATIONS = AttackFlag("--aa-iterations", "aa", "AutoAttack: APGD/FAB iterations (default 100, "
                            "pyautoattack's), for quick runs", key="n_iter")
register_attack(AttackSpec("aa-rand", "AA-rand", LINF_THREAT, _build_autoattack("rand"), options=("aa",),
                           flags=(_AA_ITERATIONS,)))
register_attack(AttackSpec("aa-standard", "AA", LINF_THREAT, _build_autoattack("standard"), options=("aa",),
                           flags=(_AA_ITERATIONS,)))
