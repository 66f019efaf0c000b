"""Attacks by name, with the paper's default parameters (Sec. 4.1), for ``pni eval``."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from ._common import AttackError
from .gradient import fgsm, pgd

Attack = Callable[[nn.Module, Tensor, Tensor], Tensor]

DEFAULT_EPS = 8 / 255
DEFAULT_EOT = 20
DEFAULT_ATTACKS: tuple[str, ...] = ("clean", "pgd", "fgsm")


def _fgsm(eps: float, **_: Any) -> tuple[Attack, dict[str, Any]]:
    return (lambda m, x, y: fgsm(m, x, y, eps)), {"eps": eps}


def _pgd(eps: float, steps: int | None, step_size: float | None, eot: int = 1,
         **_: Any) -> tuple[Attack, dict[str, Any]]:
    steps = 7 if steps is None else steps
    step_size = (2.5 * eps / steps if steps else eps) if step_size is None else step_size
    params = {"eps": eps, "steps": steps, "step_size": step_size, "random_start": True, "eot": eot}
    return (lambda m, x, y: pgd(m, x, y, eps, step_size, steps, True, eot)), params


def _eot_pgd(eps: float, steps: int | None, step_size: float | None, **_: Any) -> tuple[Attack, dict[str, Any]]:
    return _pgd(eps, steps, step_size, eot=DEFAULT_EOT)


BUILDERS: dict[str, Callable[..., tuple[Attack, dict[str, Any]]]] = {
    "fgsm": _fgsm,
    "pgd": _pgd,
    "eot-pgd": _eot_pgd,
}


def attack_names() -> list[str]:
    return ["clean", *BUILDERS]


def build_attacks(names: list[str], eps: float | None = None, steps: int | None = None,
                  step_size: float | None = None) -> tuple[dict[str, Attack], dict[str, dict[str, Any]]]:
    """Callables and their parameters for ``names``; "clean" means no attack."""
    eps = DEFAULT_EPS if eps is None else eps
    table: dict[str, Attack] = {}
    params: dict[str, dict[str, Any]] = {}
    for name in names:
        if name == "clean":
            table[name] = (lambda m, x, y: x)
            params[name] = {}
            continue
        if name not in BUILDERS:
            raise AttackError(f"unknown attack {name!r}; expected one of: {', '.join(attack_names())}")
        table[name], params[name] = BUILDERS[name](eps=eps, steps=steps, step_size=step_size)
    return table, params
