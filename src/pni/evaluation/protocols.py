"""The evaluation protocols, defined once: what ``pni eval --protocol``, every ``pni reproduce``
scale and the docs mean by "paper" and "honest".

* ``PAPER``: the paper's white-box columns (Tables 1-3): clean, PGD, FGSM, one pass each.
* ``HONEST``: the attacks a randomized defense must face: EOT-PGD (20 draws per gradient) and
  AutoAttack-rand at pyautoattack's published budget, every prediction judged over 10 noise
  draws, the per-image worst case, the attacks cascaded as AutoAttack cascades its own.

``pni eval``'s default (``--protocol honest``) runs both lists in one evaluation (``EVAL_ATTACKS``),
so one table shows the paper's PGD beside its honest counterparts; ``pni reproduce`` runs them
as two steps (the paper protocol on more trials).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EvalProtocol:
    """A named protocol: its attacks, the noise draws a prediction is judged over, whether the
    per-image worst case is added, and the attacks chained in a cascade (``evaluate(cascade=)``)."""

    name: str
    attacks: tuple[str, ...]
    votes: int
    worst_case: bool
    cascade: tuple[str, ...] = ()

    def settings(self) -> dict[str, Any]:
        """The protocol as ``evaluate_checkpoint`` keywords (lists, as a plan records them)."""
        out: dict[str, Any] = {"attacks": list(self.attacks), "votes": self.votes, "worst_case": self.worst_case}
        if self.cascade:
            out["cascade"] = list(self.cascade)
        return out


HONEST_VOTES = 10
PAPER = EvalProtocol("paper", ("clean", "pgd", "fgsm"), votes=1, worst_case=False)
HONEST = EvalProtocol("honest", ("clean", "eot-pgd", "aa-rand"), votes=HONEST_VOTES, worst_case=True,
                      cascade=("eot-pgd", "aa-rand"))
PROTOCOLS: dict[str, EvalProtocol] = {p.name: p for p in (HONEST, PAPER)}
# what `pni eval --protocol NAME` runs: the honest protocol beside the paper's attacks
EVAL_ATTACKS: dict[str, tuple[str, ...]] = {
    "honest": (*PAPER.attacks, *(a for a in HONEST.attacks if a not in PAPER.attacks)),
    "paper": PAPER.attacks,
}
