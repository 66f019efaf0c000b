"""The published budgets of the honest attacks, and the label a reduced budget must carry.

EOT-PGD's published budget is 20 noise draws per gradient (Athalye et al. 2018; pni's honest
protocol); AutoAttack-rand's is what pyautoattack's ``AutoAttack(version="rand")`` sets
(APGD-CE + APGD-DLR, 100 iterations, EOT 20; read from the package by
``autoattack.published_budget``). A number measured with less is still a number, but its
label names the budget it ran at ("AA-rand, 10 it x 10 draws"), in every table header,
column and verdict line: it never passes for the published attack.

Also the paper's PGD steps for a data shape (Sec. 4.1) and Madry et al.'s step size.
"""
from __future__ import annotations

from typing import Any

PUBLISHED_EOT = 20   # EOT-PGD's draws per gradient in the honest protocol, at every scale

PAPER_PGD_STEPS_MNIST = 40   # Sec. 4.1: MNIST-like data (1x28x28)
PAPER_PGD_STEPS = 7          # Sec. 4.1: CIFAR-10


def paper_pgd_steps(image_shape: tuple[int, ...]) -> int:
    """The paper's PGD steps for data of this shape: 40 for 1x28x28 (MNIST), 7 otherwise."""
    return PAPER_PGD_STEPS_MNIST if tuple(image_shape) == (1, 28, 28) else PAPER_PGD_STEPS


def madry_step_size(eps: float, steps: int) -> float:
    """The step size ``2.5 * eps / steps`` (Madry et al. 2018): enough to cross the eps-ball
    from any start; ``eps`` itself for a single step."""
    return 2.5 * eps / steps if steps else eps


def published(name: str) -> dict[str, Any] | None:
    """The published budget of the attack ``name`` (None: it has no budget to reduce)."""
    if name == "eot-pgd":
        return {"eot": PUBLISHED_EOT}
    if name == "aa-rand":
        from .autoattack import published_budget

        return {key: published_budget("rand")[key] for key in ("n_iter", "eot_iter")}
    return None


def is_reduced(name: str, params: dict[str, Any] | None) -> bool:
    """Whether ``params`` (an attack's recorded parameters) fall short of its published budget."""
    budget = published(name)
    if budget is None or not params:
        return False
    return any(key in params and params[key] is not None and int(params[key]) < int(value)
               for key, value in budget.items())


def budget_text(name: str, params: dict[str, Any] | None) -> str:
    """``"10 it x 10 draws"`` (AA-rand) or ``"EOT 10"`` (EOT-PGD): the budget ``params`` record."""
    params = params or {}
    if name == "aa-rand":
        return f"{params.get('n_iter')} it x {params.get('eot_iter')} draws"
    if name == "eot-pgd":
        return f"EOT {params.get('eot')}"
    return ""


def label(name: str, title: str, params: dict[str, Any] | None) -> str:
    """``title`` at the published budget, else ``"title, <budget> (reduced)"``."""
    if not is_reduced(name, params):
        return title
    return f"{title}, {budget_text(name, params)} (reduced)"
