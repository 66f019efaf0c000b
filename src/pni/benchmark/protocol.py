"""Versioned honest protocols: everything that must not vary between two cards.

``pni-honest-v1`` fixes the test images (a class-stratified sample of ``n`` with a fixed
seed), the attacks and their budgets, the votes each prediction is judged over, the
per-image worst case and the audit's checklist. The honest attacks run in a cascade, as
AutoAttack runs its own: each attacks only the images some draw still classifies correctly
under the earlier ones; the per-image worst case, the card's headline, is exactly that of
running every attack on every image (``pni.evaluate(cascade=)``), at a fraction of the cost
on a model with low robust accuracy, and the chained attacks' own accuracies are cumulative.
A card records the protocol by name and version; a run that changed anything (a smaller
``n``, the smoke budget of the tests) records what it changed, and the leaderboard shows it
next to the numbers.

The attack defaults come from the attacks' own files (one source: ``pni eval`` uses the
same): EOT-PGD's 20 draws, ``aa-rand`` at its registered defaults (APGD-CE + APGD-DLR, 100
iterations x 20 draws, pyautoattack), Square with EOT.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..settings import is_int
from ..attacks.gradient import DEFAULT_EOT
from ..attacks.registry import DEFAULT_VOTES
from ..errors import PNIError


class BenchmarkError(PNIError):
    """An unknown protocol or budget, a bad override, a card that does not validate."""


@dataclass(frozen=True)
class Protocol:
    """One versioned protocol: its images, attacks, budgets, votes and audit."""

    name: str
    version: int
    n: int                                  # class-stratified test images
    subset_seed: int                        # their sample's seed
    trials: int                             # seeds of the attacks' randomness
    votes: int                              # fresh draws each prediction is judged over
    attacks: tuple[str, ...]                # registry names; the worst case is over all of them
    paper_attack: str                       # the paper-style number: one-pass PGD
    honest_attacks: tuple[str, ...]         # the adaptive ones (the gap's other side)
    eot_pgd_steps: int                      # EOT-PGD's iterations (its step: 2.5 eps / steps)
    attack_options: dict[str, Any] = field(default_factory=dict)
    audit_items: tuple[int, ...] = ()       # pni.audit checklist items run
    audit_n: int = 200                      # images the audit runs on (a stratified sample of the n)
    audit_options: dict[str, Any] = field(default_factory=dict)
    cascade: tuple[str, ...] = ()           # attacks chained after "clean" (cumulative accuracies)

    def to_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


PNI_HONEST_V1 = Protocol(
    name="pni-honest-v1", version=1, n=1000, subset_seed=0, trials=1, votes=DEFAULT_VOTES,
    attacks=("clean", "pgd", "eot-pgd", "aa-rand", "square"), paper_attack="pgd",
    honest_attacks=("eot-pgd", "aa-rand", "square"), eot_pgd_steps=40,
    attack_options={"eot": DEFAULT_EOT, "aa": {}, "square": {"n_queries": 1000, "eot": DEFAULT_EOT}},
    audit_items=(1, 3, 4, 5, 6, 7), audit_n=200, audit_options={},
    cascade=("eot-pgd", "aa-rand", "square"))

PROTOCOLS: dict[str, Protocol] = {PNI_HONEST_V1.name: PNI_HONEST_V1}

# Budgets a run may ask for instead of the protocol's ("full"). Anything but "full" is
# written on the card and on the leaderboard: such a card is not comparable with full ones.
BUDGETS: dict[str, dict[str, Any]] = {
    "full": {},
    # the committed CPU cards of this repository: the protocol's attacks and draws, fewer
    # iterations (written on the card)
    "cpu": {"eot_pgd_steps": 20,
            "attack_options": {"eot": DEFAULT_EOT, "aa": {"n_iter": 20},
                               "square": {"n_queries": 300, "eot": DEFAULT_EOT}},
            "audit_n": 100, "audit_options": {"random_n": 20, "random_samples": 200,
                                              "steps_values": (10, 20, 50), "eot_ks": (1, 5, 10)}},
    # seconds, for tests: every stage runs, nothing is measured
    "smoke": {"n": 20, "votes": 3, "eot_pgd_steps": 2,
              "attack_options": {"eot": 2, "aa": {"n_iter": 2, "eot_iter": 2},
                                 "square": {"n_queries": 10, "eot": 2}},
              "audit_items": (1,), "audit_n": 10, "audit_options": {"steps": 2}},
}


def get_protocol(name: str, budget: str = "full", n: int | None = None) -> tuple[Protocol, dict[str, Any]]:
    """The protocol ``name`` under ``budget`` (and ``n`` images when given), and what was
    changed from the protocol itself (``{}``: the protocol as published)."""
    if name not in PROTOCOLS:
        raise BenchmarkError(f"unknown benchmark protocol {name!r}; expected one of: {', '.join(PROTOCOLS)}")
    if budget not in BUDGETS:
        raise BenchmarkError(f"unknown budget {budget!r}; expected one of: {', '.join(BUDGETS)}")
    base = PROTOCOLS[name]
    changes = dict(BUDGETS[budget])
    if n is not None:
        if not is_int(n, 1):
            raise BenchmarkError(f"n must be a positive number of images, got {n!r}")
        changes["n"] = n
    changes = {k: v for k, v in changes.items() if getattr(base, k) != v}
    return dataclasses.replace(base, **changes), _jsonable(changes)


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    def convert(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: convert(x) for k, x in v.items()}
        if isinstance(v, (tuple, list)):
            return [convert(x) for x in v]
        return v
    return convert(values)
