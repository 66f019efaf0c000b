"""Verdicts on the paper's claims from our measurements: a claim *holds*, *does not hold at
this scale*, or is *inconclusive* (the difference is within two standard errors). The
standard error of a measurement is std / sqrt(trials) over its trials, or, with one trial,
the binomial error sqrt(p (1 - p) / n) on its n images; a difference's is the root sum of
squares of both sides'."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold at this scale"
INCONCLUSIVE = "inconclusive"
NOT_JUDGED = "not judged yet (runs missing)"


@dataclass(frozen=True)
class Measure:
    """One of our numbers: mean and std (percent, or an L2 norm) over ``trials``, on ``n`` images."""

    mean: float
    std: float = 0.0
    trials: int = 1
    n: int | None = None
    percent: bool = True

    def stderr(self) -> float:
        """The larger of the trials' standard error and the binomial error of an accuracy on
        ``n`` images: identical trials (a deterministic model) still leave the sampling error
        of the test images."""
        trials = self.std / math.sqrt(self.trials) if self.trials > 1 else 0.0
        sampling = 0.0
        if self.percent and self.n:
            p = min(max(self.mean / 100, 0.0), 1.0)
            sampling = 100 * math.sqrt(p * (1 - p) / self.n)
        return max(trials, sampling)

    def cell(self) -> str:
        """``45.94±0.11`` as the paper prints it (a single trial: the mean alone)."""
        return f"{self.mean:.2f}±{self.std:.2f}" if self.trials > 1 else f"{self.mean:.2f}"

    def cite(self) -> str:
        n = f", n={self.n}" if self.n else ""
        return f"{self.cell()} ({self.trials} trial{'s' if self.trials != 1 else ''}{n})"


def measure(results: dict[str, Any] | None, setting: str, attack: str) -> Measure | None:
    """The accuracy of ``attack`` in noise ``setting`` from a ``results.json`` (None: absent)."""
    if not results:
        return None
    stats = results.get("accuracy_percent", {}).get(setting, {}).get(attack)
    if stats is None:
        return None
    return Measure(float(stats["mean"]), float(stats.get("std", 0.0)), int(results.get("trials", 1)),
                   results.get("n"))


def metric(results: dict[str, Any] | None, attack: str, key: str) -> Measure | None:
    """An attack's own figure (``success_rate`` %, ``mean_l2``) from a ``results.json``, from the
    first noise setting that has it."""
    if not results:
        return None
    for per_attack in results.get("attack_metrics", {}).values():
        stats = per_attack.get(attack, {}).get(key)
        if stats is not None:
            return Measure(float(stats["mean"]), float(stats.get("std", 0.0)), int(results.get("trials", 1)),
                           results.get("n"), percent=key != "mean_l2")
    return None


@dataclass(frozen=True)
class Verdict:
    claim: str
    source: str            # where the paper makes it ("Table 2")
    verdict: str
    evidence: str = ""
    note: str = ""

    def line(self) -> str:
        evidence = f": {self.evidence}" if self.evidence else ""
        note = f" {self.note}" if self.note else ""
        return f"- **{self.claim}** ({self.source}): *{self.verdict}*{evidence}.{note}"


def judge(claim: str, source: str, better: tuple[str, Measure | None], worse: tuple[str, Measure | None],
          higher_is_better: bool = True) -> Verdict:
    """The claim "``better`` beats ``worse``": holds when ours differ in the claimed direction
    by more than two standard errors, does not hold when they differ the other way by more,
    inconclusive in between; not judged when either number is missing."""
    (name_a, a), (name_b, b) = better, worse
    if a is None or b is None:
        missing = ", ".join(name for name, m in (better, worse) if m is None)
        return Verdict(claim, source, NOT_JUDGED, f"missing: {missing}")
    diff = (a.mean - b.mean) if higher_is_better else (b.mean - a.mean)
    two_se = 2 * math.hypot(a.stderr(), b.stderr())
    verdict = INCONCLUSIVE if abs(diff) <= two_se else HOLDS if diff > 0 else DOES_NOT_HOLD
    evidence = (f"{name_a} {a.cite()} vs {name_b} {b.cite()}; difference {a.mean - b.mean:+.2f}, "
                f"two standard errors {two_se:.2f}")
    return Verdict(claim, source, verdict, evidence)


def erased(claim: str, source: str, paper_protocol: Verdict, honest: Verdict, attack: str) -> Verdict:
    """Whether ``attack`` (EOT-PGD, AA-rand) erases a gain the paper-protocol PGD shows."""
    if NOT_JUDGED in (paper_protocol.verdict, honest.verdict):
        return Verdict(claim, source, NOT_JUDGED, honest.evidence if honest.verdict == NOT_JUDGED
                       else paper_protocol.evidence)
    if paper_protocol.verdict != HOLDS:
        return Verdict(claim, source, INCONCLUSIVE, honest.evidence,
                       note=f"PNI shows no gain under paper-protocol PGD here, so there is none for "
                            f"{attack} to erase.")
    if honest.verdict == HOLDS:
        return Verdict(claim, source, DOES_NOT_HOLD, honest.evidence,
                       note=f"PNI's gain survives {attack}.")
    return Verdict(claim, source, HOLDS, honest.evidence,
                   note=f"**{attack} erases PNI's gain**: the advantage under the paper's PGD "
                        f"is not there under {attack}.")
