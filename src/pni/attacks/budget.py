"""The full budgets of pni's attacks, and the label a reduced budget must carry.

EOT-PGD's published budget is 20 noise draws per gradient (Athalye et al. 2018; pni's honest
protocol); AutoAttack-rand's is what pyautoattack's ``AutoAttack(version="rand")`` sets
(APGD-CE + APGD-DLR, 100 iterations, EOT 20; read from the package by
``autoattack.published_budget``). ZOO and C&W have no published budget: theirs is the
attack's own default in pni (ZOO: ``zoo()``'s 1,000 iterations of 128 coordinates, EOT-ZOO's
10 draws per query; C&W: its profile's steps and binary-search steps, ``cw.CW_PROFILES``).
A number measured with less is still a number, but its label names the budget it ran at
("AA-rand, 10 it x 10 draws", "ZOO, 50 it x 128 coords"), in every table header, column and
verdict line: it never passes for the full attack. Draws are not a reduced budget on a
deterministic model: its one draw is every draw.

Also the paper's PGD steps for a data shape (Sec. 4.1) and Madry et al.'s step size.
"""
from __future__ import annotations

import inspect
from collections.abc import Sequence
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


DRAW_KEYS = ("eot", "eot_iter")   # noise draws: never short on a deterministic model


def published(name: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The full budget of the attack ``name`` (None: it has none to reduce): the published one
    (EOT-PGD, AA-rand), else the attack's own default in pni (ZOO, EOT-ZOO; C&W: that of the
    profile ``params`` record)."""
    if name == "eot-pgd":
        return {"eot": PUBLISHED_EOT}
    if name == "aa-rand":
        from .autoattack import published_budget

        return {key: published_budget("rand")[key] for key in ("n_iter", "eot_iter")}
    if name in ("zoo", "eot-zoo"):
        from .zoo import EOT_ZOO_DRAWS, zoo

        defaults = inspect.signature(zoo).parameters
        budget = {key: defaults[key].default for key in ("steps", "coords")}
        return budget | ({"eot": EOT_ZOO_DRAWS} if name == "eot-zoo" else {})
    if name == "cw":
        from .cw import CW_PROFILES

        profile = CW_PROFILES.get(str((params or {}).get("profile")))
        return None if profile is None else {key: profile[key] for key in ("steps", "binary_search_steps")}
    return None


def is_reduced(name: str, params: dict[str, Any] | None, randomized: bool = True) -> bool:
    """Whether ``params`` (an attack's recorded parameters) fall short of its full budget; on a
    model that is not ``randomized``, fewer noise draws (``DRAW_KEYS``) are not short."""
    budget = published(name, params)
    if budget is None or not params:
        return False
    return any(key in params and params[key] is not None and int(params[key]) < int(value)
               for key, value in budget.items() if randomized or key not in DRAW_KEYS)


def budget_text(name: str, params: dict[str, Any] | None, randomized: bool = True) -> str:
    """The budget ``params`` record: ``"10 it x 10 draws"`` (AA-rand), ``"EOT 10"`` (EOT-PGD),
    ``"50 it x 128 coords"`` (ZOO, EOT-ZOO: its draws named too when they fall short on a
    ``randomized`` model, ``" x 5 draws"``), ``"200 steps x 9 searches"`` (C&W)."""
    params = params or {}
    if name == "aa-rand":
        return f"{params.get('n_iter')} it x {params.get('eot_iter')} draws"
    if name == "eot-pgd":
        return f"EOT {params.get('eot')}"
    if name in ("zoo", "eot-zoo"):
        full = published(name, params) or {}
        short = randomized and "eot" in full and int(params.get("eot") or 1) < full["eot"]
        return f"{params.get('steps')} it x {params.get('coords')} coords" + (
            f" x {params.get('eot')} draws" if short else "")
    if name == "cw":
        return f"{params.get('steps')} steps x {params.get('binary_search_steps')} searches"
    return ""


def label(name: str, title: str, params: dict[str, Any] | None, randomized: bool = True) -> str:
    """``title`` at the full budget, else ``"title, <budget> (reduced)"``."""
    if not is_reduced(name, params, randomized):
        return title
    return f"{title}, {budget_text(name, params, randomized)} (reduced)"


def recorded(name: str, found: Sequence[dict[str, Any] | None]) -> list[tuple[dict[str, Any] | None, bool]]:
    """Per result in ``found`` (results.json contents, None where missing): the parameters it
    records for the attack ``name`` and whether its model was randomized (a result that does
    not say counts as randomized)."""
    return [((r.get("attacks") or {}).get(name), r.get("randomized") is not False) for r in found if r]


def column_label(name: str, title: str, found: Sequence[dict[str, Any] | None]) -> str:
    """``title`` of a table column whose cells come from the results ``found`` (one per row,
    None where missing): each budget below the full one named (``label``), joined by " / "
    when the rows ran at different ones (a deterministic model's one draw is every draw)."""
    labels = {label(name, title, params, randomized) for params, randomized in recorded(name, found)}
    return " / ".join(sorted(labels)) if labels else title


def one_draw_twins(names: Sequence[str], chain: Sequence[str] = (),
                   params: dict[str, dict[str, Any]] | None = None) -> dict[str, str]:
    """Each attack of ``names`` that equals an earlier one on a deterministic model (its
    ``one_draw_of``), and that one: EOT-ZOO with the noise off is ZOO, draw for draw the same
    computation and seeds, so ``evaluate`` runs it once and its estimates count it once. With
    ``params`` (each attack's recorded parameters) only where they agree but for the draws
    (``DRAW_KEYS``). Attacks in ``chain`` (a cascade) and unregistered names excepted."""
    from .registry import attack_names, get_attack

    def without_draws(name: str) -> dict[str, Any]:
        return {key: value for key, value in (params or {}).get(name, {}).items() if key not in DRAW_KEYS}
    twins = {}
    for i, name in enumerate(names):
        twin = get_attack(name).one_draw_of if name in attack_names() else None
        if (twin in names[:i] and name not in chain and twin not in chain
                and without_draws(name) == without_draws(twin)):
            twins[name] = twin
    return twins
