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
    se: float | None = None    # a sampling error recorded with the number (a mean L2's, over images)

    def stderr(self) -> float:
        """The larger of the trials' standard error and the sampling error of the images: the
        binomial error of an accuracy on ``n`` images, or the recorded ``se`` (a mean L2's):
        identical trials (a deterministic model) still leave the sampling error."""
        trials = self.std / math.sqrt(self.trials) if self.trials > 1 else 0.0
        sampling = self.se if self.se is not None and math.isfinite(self.se) else 0.0
        if self.percent and self.n:
            p = min(max(self.mean / 100, 0.0), 1.0)
            sampling = 100 * math.sqrt(p * (1 - p) / self.n)
        return max(trials, sampling)

    def error_known(self) -> bool:
        """Whether ``stderr`` rests on something measured: several trials, an accuracy's
        binomial error, or a recorded ``se``."""
        return self.trials > 1 or (self.percent and bool(self.n)) or (
            self.se is not None and math.isfinite(self.se))

    def cell(self) -> str:
        """``45.94±0.11`` as the paper prints it (a single trial: the mean alone)."""
        digits = 2 if self.percent else 3
        return f"{self.mean:.{digits}f}±{self.std:.{digits}f}" if self.trials > 1 else f"{self.mean:.{digits}f}"

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
            se = per_attack[attack].get(f"{key}_stderr")
            return Measure(float(stats["mean"]), float(stats.get("std", 0.0)), int(results.get("trials", 1)),
                           results.get("n"), percent=key != "mean_l2",
                           se=float(se["mean"]) if se is not None else None)
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
    if not (math.isfinite(a.mean) and math.isfinite(b.mean)):
        def shown(m: Measure) -> str:
            return m.cite() if math.isfinite(m.mean) else "undefined (nothing to average over)"
        return Verdict(claim, source, INCONCLUSIVE, f"{name_a} {shown(a)} vs {name_b} {shown(b)}")
    diff = (a.mean - b.mean) if higher_is_better else (b.mean - a.mean)
    two_se = 2 * math.hypot(a.stderr(), b.stderr())
    verdict = INCONCLUSIVE if abs(diff) <= two_se else HOLDS if diff > 0 else DOES_NOT_HOLD
    d = 2 if a.percent else 3
    evidence = (f"{name_a} {a.cite()} vs {name_b} {b.cite()}; difference {a.mean - b.mean:+.{d}f}, "
                f"two standard errors {two_se:.{d}f}")
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
