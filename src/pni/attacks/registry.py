"""Attacks by name, with the paper's default parameters (Sec. 4.1), for ``pni eval``.

An attack is a callable ``(model, x, y)`` returning the adversarial images, or a result
object with ``x_adv`` and ``per_sample()`` (C&W, ZOO, AutoAttack) whose extra per-sample
figures (L2 norms, success flags, AutoAttack's own flags) the evaluation reports too.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from ..runs import madry_step_size
from ._common import AttackError, check_eps, check_positive_int
from .gradient import fgsm, pgd

Attack = Callable[[nn.Module, Tensor, Tensor], Any]

DEFAULT_EPS = 8 / 255
DEFAULT_EOT = 20
DEFAULT_VOTES = 10  # noise draws a prediction is judged over in `pni eval` (honest protocol)
# `pni eval` by default: the paper's attacks plus the adaptive ones a randomized defense
# must face (EOT-PGD, AutoAttack 'rand'); PROTOCOLS["paper"] is the paper's protocol alone.
DEFAULT_ATTACKS: tuple[str, ...] = ("clean", "pgd", "fgsm", "eot-pgd", "aa-rand")
PAPER_ATTACKS: tuple[str, ...] = ("clean", "pgd", "fgsm")
PROTOCOLS: dict[str, tuple[str, ...]] = {"honest": DEFAULT_ATTACKS, "paper": PAPER_ATTACKS}
# C&W-L2 looks for the smallest L2 perturbation, with no bound: its "accuracy" (where it
# failed) is not robustness at eps, so it stays out of the per-sample worst case.
MIN_NORM_THREAT = "L2 min-norm"
# Options of build_attacks (and of evaluate(attack_options=...)).
OPTIONS = ("eot", "eot_batch", "cw_profile", "cw", "zoo", "aa")


def _fgsm(eps: float, **_: Any) -> tuple[Attack, dict[str, Any]]:
    return (lambda m, x, y: fgsm(m, x, y, eps)), {"eps": eps}


def _pgd_draws(eps: float, steps: int | None, step_size: float | None, draws: int,
               eot_batch: int | None = None) -> tuple[Attack, dict[str, Any]]:
    steps = 7 if steps is None else steps
    step_size = madry_step_size(eps, steps) if step_size is None else step_size
    params = {"eps": eps, "steps": steps, "step_size": step_size, "random_start": True, "eot": draws}
    return (lambda m, x, y: pgd(m, x, y, eps, step_size, steps, True, draws, eot_batch=eot_batch)), params


def _pgd(eps: float, steps: int | None, step_size: float | None, **_: Any) -> tuple[Attack, dict[str, Any]]:
    return _pgd_draws(eps, steps, step_size, 1)


def _eot_pgd(eps: float, steps: int | None, step_size: float | None, eot: int | None = None,
             eot_batch: int | None = None, **_: Any) -> tuple[Attack, dict[str, Any]]:
    eot = DEFAULT_EOT if eot is None else check_positive_int(eot, "eot")
    return _pgd_draws(eps, steps, step_size, eot, eot_batch)


def _cw(cw_profile: str = "paper", cw: dict[str, Any] | None = None, **_: Any) -> tuple[Attack, dict[str, Any]]:
    from .cw import CW_PROFILES, cw_l2

    if cw_profile not in CW_PROFILES:
        raise AttackError(f"unknown C&W profile {cw_profile!r}; expected one of: {', '.join(CW_PROFILES)}")
    settings = CW_PROFILES[cw_profile] | dict(cw or {})
    params = {"profile": cw_profile, **settings, "threat": MIN_NORM_THREAT}
    return (lambda m, x, y: cw_l2(m, x, y, **settings)), params


def _zoo(eps: float, zoo: dict[str, Any] | None = None, **_: Any) -> tuple[Attack, dict[str, Any]]:
    import inspect

    from .zoo import zoo as zoo_attack

    settings = {"eps": eps} | dict(zoo or {})
    defaults = {k: v.default for k, v in inspect.signature(zoo_attack).parameters.items()
                if v.default is not inspect.Parameter.empty}
    params = defaults | settings
    return (lambda m, x, y: zoo_attack(m, x, y, **settings)), params


def _autoattack(version: str) -> Callable[..., tuple[Attack, dict[str, Any]]]:
    def build(eps: float, aa: dict[str, Any] | None = None, **_: Any) -> tuple[Attack, dict[str, Any]]:
        from .autoattack import autoattack

        settings = dict(aa or {})
        params = {"eps": eps, "version": version, "package": "pyautoattack",
                  "attacks": "apgd-ce,apgd-dlr" if version == "rand" else "apgd-ce,apgd-t,fab-t,square",
                  "n_iter": 100, "n_restarts": 1, "eot_iter": 20 if version == "rand" else 1}
        params |= {k: v for k, v in settings.items() if k in ("n_iter", "n_restarts", "eot_iter")}
        # votes here only pick each image's strongest point; the evaluation judges it anew
        return (lambda m, x, y: autoattack(m, x, y, eps, version, **({"votes": 10} | settings))), params
    return build


BUILDERS: dict[str, Callable[..., tuple[Attack, dict[str, Any]]]] = {
    "fgsm": _fgsm,
    "pgd": _pgd,
    "eot-pgd": _eot_pgd,
    "cw": _cw,
    "zoo": _zoo,
    "aa-rand": _autoattack("rand"),
    "aa-standard": _autoattack("standard"),
}


def attack_names() -> list[str]:
    return ["clean", *BUILDERS]


def build_attacks(names: list[str], eps: float | None = None, steps: int | None = None,
                  step_size: float | None = None,
                  **options: Any) -> tuple[dict[str, Attack], dict[str, dict[str, Any]]]:
    """Callables and their parameters for ``names``; "clean" means no attack.

    ``options``: ``eot`` (EOT-PGD's draws, default 20), ``eot_batch`` (draws per vectorized
    pass), ``cw_profile`` ("paper" or "strong"), and dicts of keyword overrides ``cw``
    (``pni.attacks.cw_l2``), ``zoo`` (``pni.attacks.zoo``; L-inf bounded at ``eps`` here)
    and ``aa`` (``pni.attacks.autoattack``: n_iter, n_restarts, eot_iter, batch_size).
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise AttackError(f"unknown attack option(s) {', '.join(unknown)}; expected: {', '.join(OPTIONS)}")
    options = {k: v for k, v in options.items() if v is not None}
    eps = check_eps(DEFAULT_EPS if eps is None else eps)
    if steps is not None:
        check_positive_int(steps, "steps", minimum=0)
    if step_size is not None:
        check_eps(step_size, "step_size")
    table: dict[str, Attack] = {}
    params: dict[str, dict[str, Any]] = {}
    for name in names:
        if name == "clean":
            table[name] = (lambda m, x, y: x)
            params[name] = {}
            continue
        if name not in BUILDERS:
            raise AttackError(f"unknown attack {name!r}; expected one of: {', '.join(attack_names())}")
        table[name], params[name] = BUILDERS[name](eps=eps, steps=steps, step_size=step_size, **options)
    return table, params
