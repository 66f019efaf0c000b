"""Verdicts on the paper's claims from our measurements: a claim *holds*, *does not hold at
this scale*, or is *inconclusive* (the difference is within two standard errors).

Two accuracies measured on the same images (the same subset, labels and n: the
``pni.evaluation.per_image.fingerprint`` of both results.json), each with its per-image outcomes, are
compared image by image: the difference's standard error is sd(a_i - b_i) / sqrt(n), a_i being
image i's accuracy averaged over the trials (so the noise's randomness across trials is in
it); most images are right (or wrong) for both models, which an unpaired error ignores. Its
floor is the trials' standard error of the difference, std over trials of (a_t - b_t) /
sqrt(trials): the images of a batch share one weight-noise draw, so the per-image spread
alone can understate the trial-to-trial spread. Otherwise (different images, or an older
results.json without per-image outcomes) the rule is unpaired: a measurement's standard error
is std / sqrt(trials) over its trials or the binomial error sqrt(p (1 - p) / n) on its n
images, whichever is larger, and a difference's is the root sum of squares of both sides'."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..evaluation import per_image

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
    # each image's accuracy (the Measure's unit), mean over trials; per-trial accuracies; and
    # which images they are over (pni.evaluation.per_image.fingerprint): for paired comparisons
    per_image: tuple[float, ...] | None = field(default=None, repr=False)
    per_trial: tuple[float, ...] | None = field(default=None, repr=False)
    images: str | None = None
    # the stratified order the images are the first n of (subset seed and dataset size): two
    # measures with equal ``order`` share their first min(n) images (pni.data.stratified_indices)
    order: str | None = None
    # from an evaluation step still to finish (its finished attacks: pni.evaluation.partial)
    unfinished: bool = False

    def stderr(self) -> float:
        """The larger of the trials' standard error and the sampling error of the images: the
        binomial error of an accuracy on ``n`` images, or the recorded ``se`` (a mean L2's):
        identical trials (a deterministic model) still leave the sampling error."""
        trials = sample_std(self.std, self.trials) / math.sqrt(self.trials) if self.trials > 1 else 0.0
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
        unfinished = ", its step still to finish" if self.unfinished else ""
        return f"{self.cell()} ({self.trials} trial{'s' if self.trials != 1 else ''}{n}{unfinished})"


def sample_std(population_std: float, count: int) -> float:
    """The sample standard deviation (ddof 1) from the population one the paper prints."""
    return population_std * math.sqrt(count / (count - 1)) if count > 1 else 0.0


def measure(results: dict[str, Any] | None, setting: str, attack: str) -> Measure | None:
    """The accuracy of ``attack`` in noise ``setting`` from a ``results.json`` (None: absent),
    with its per-image and per-trial accuracies where the file records them (``per_image``)."""
    if not results:
        return None
    stats = results.get("accuracy_percent", {}).get(setting, {}).get(attack)
    if stats is None:
        return None
    shares = per_image.shares(results, setting, attack)     # (trials, n) or None
    images = per_image.fingerprint(results) if shares is not None and shares.size else None
    subset = results.get("subset") or {}
    order = f"seed={subset.get('seed')}/of={subset.get('of')}" if images and subset.get("of") else None
    return Measure(float(stats["mean"]), float(stats.get("std", 0.0)), int(results.get("trials", 1)),
                   results.get("n"),
                   per_image=tuple((100 * shares.mean(0)).tolist()) if images else None,
                   per_trial=tuple((100 * shares.mean(1)).tolist()) if images else None, images=images,
                   order=order, unfinished=bool(results.get("partial")))


def metric(results: dict[str, Any] | None, attack: str, key: str, setting: str | None = None) -> Measure | None:
    """An attack's own figure (``success_rate`` %, ``mean_l2``) from a ``results.json``, from the
    noise ``setting`` (default: the first that has it). No per-image outcomes: these figures
    average over images that depend on the model (those it classified right, those the attack
    fooled), so they are always compared unpaired."""
    if not results:
        return None
    for name, per_attack in results.get("attack_metrics", {}).items():
        if setting is not None and name != setting:
            continue
        stats = per_attack.get(attack, {}).get(key)
        if stats is not None:
            se = per_attack[attack].get(f"{key}_stderr")
            return Measure(float(stats["mean"]), float(stats.get("std", 0.0)), int(results.get("trials", 1)),
                           results.get("n"), percent=key != "mean_l2",
                           se=float(se["mean"]) if se is not None else None,
                           unfinished=bool(results.get("partial")))
    return None


@dataclass(frozen=True)
class Verdict:
    claim: str
    source: str            # where the paper makes it ("Table 2")
    verdict: str
    evidence: str = ""
    note: str = ""
    # the judged difference (claimed direction positive) and its two standard errors, where
    # ``judge`` measured them: what ``erased`` compares across protocols
    difference: float | None = None
    two_se: float | None = None
    # the two measures judged (claimed-better first), for comparisons across protocols
    measures: tuple[Measure, Measure] | None = field(default=None, repr=False, compare=False)

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
    paired = paired_stderr(a, b)
    two_se = 2 * (math.hypot(a.stderr(), b.stderr()) if paired is None else paired)
    verdict = INCONCLUSIVE if abs(diff) <= two_se else HOLDS if diff > 0 else DOES_NOT_HOLD
    d = 2 if a.percent else 3
    how = "unpaired" if paired is None else f"paired over the same {len(a.per_image or ())} images"
    evidence = (f"{name_a} {a.cite()} vs {name_b} {b.cite()}; difference {a.mean - b.mean:+.{d}f}, "
                f"two standard errors {two_se:.{d}f} ({how})")
    return Verdict(claim, source, verdict, evidence, difference=diff, two_se=two_se,
                   measures=(a, b) if higher_is_better else (b, a))


def paired_stderr(a: Measure, b: Measure) -> float | None:
    """The standard error of ``a - b`` compared image by image, or None when they are not on
    the same images (fingerprints or lengths differ, or either lacks per-image accuracies):
    sd(a_i - b_i) / sqrt(n), at least the trials' error of the difference (the std over trials
    of a_t - b_t over sqrt(trials), or both sides' trial errors combined when the trials do
    not line up)."""
    if (a.per_image is None or b.per_image is None or a.images is None or a.images != b.images
            or len(a.per_image) != len(b.per_image) or len(a.per_image) < 2):
        return None
    differences = np.subtract(a.per_image, b.per_image)
    images = float(differences.std(ddof=1)) / math.sqrt(len(differences))
    if a.per_trial is not None and b.per_trial is not None and len(a.per_trial) == len(b.per_trial) > 1:
        trial_diffs = np.subtract(a.per_trial, b.per_trial)
        trials = float(trial_diffs.std(ddof=1)) / math.sqrt(len(trial_diffs))
    else:
        trials = math.hypot(*(sample_std(m.std, m.trials) / math.sqrt(m.trials) if m.trials > 1 else 0.0
                              for m in (a, b)))
    return max(images, trials)


def erased(claim: str, source: str, paper_protocol: Verdict, honest: Verdict, attack: str) -> Verdict:
    """Whether ``attack`` (EOT-PGD, AA-rand) erases a gain the paper-protocol PGD shows. It
    *holds* when the gain is gone under ``attack`` (no significant gain there) and has shrunk
    by more than two standard errors of the change; it *does not hold* when the gain survives ``attack``
    significantly; otherwise it is *inconclusive*: the honest difference is consistent both
    with no gain and with the paper-protocol gain. The change is paired image by image where
    both protocols ran on the same images (``paired_change``: the honest subset is a prefix of
    the paper-protocol one), else the two differences' errors are combined as independent."""
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
    shrink = change_two_se = None
    how = "unpaired across the protocols"
    paired = paired_change(paper_protocol, honest)
    if paired is not None:
        shrink, change_two_se, images = paired
        how = f"paired over the {images} images both protocols ran on"
    elif None not in (paper_protocol.difference, paper_protocol.two_se, honest.difference, honest.two_se):
        shrink = paper_protocol.difference - honest.difference
        change_two_se = math.hypot(paper_protocol.two_se, honest.two_se)
    if shrink is None or change_two_se is None:
        return Verdict(claim, source, INCONCLUSIVE, honest.evidence)
    evidence = (f"the gain is {paper_protocol.difference:+.2f} under PGD and {honest.difference:+.2f} under "
                f"{attack}, a change of {-shrink:+.2f} against two standard errors {change_two_se:.2f} "
                f"({how}); {honest.evidence}")
    if shrink > change_two_se:
        return Verdict(claim, source, HOLDS, evidence,
                       note=f"**{attack[:1].upper() + attack[1:]} erases PNI's gain**: the advantage under the paper's PGD "
                            f"is not there under {attack}.", difference=shrink, two_se=change_two_se)
    return Verdict(claim, source, INCONCLUSIVE, evidence,
                   note=f"No significant gain is left under {attack}, but its images are too few to "
                        f"tell a lost gain from a kept one.", difference=shrink, two_se=change_two_se)


def paired_change(paper_protocol: Verdict, honest: Verdict) -> tuple[float, float, int] | None:
    """The shrink of a gain from the paper protocol to the honest one, image by image: over the
    first n images of the stratified order both ran on (the honest subset is a prefix of the
    paper-protocol one: ``Measure.order``), d_i = (a_i - b_i) under PGD minus (a_i - b_i) under
    the honest attack; returns mean(d), two standard errors 2 sd(d) / sqrt(n) and n. None when
    the four measures are not on one stratified order with per-image outcomes."""
    if paper_protocol.measures is None or honest.measures is None:
        return None
    (pa, pb), (ha, hb) = paper_protocol.measures, honest.measures
    four = (pa, pb, ha, hb)
    if any(m.per_image is None or m.order is None for m in four) or len({m.order for m in four}) != 1:
        return None
    if pa.images != pb.images or ha.images != hb.images:
        return None
    n = min(len(m.per_image or ()) for m in four)
    if n < 2:
        return None
    d = (np.subtract(pa.per_image[:n], pb.per_image[:n]) - np.subtract(ha.per_image[:n], hb.per_image[:n]))
    return float(d.mean()), 2 * float(d.std(ddof=1)) / math.sqrt(n), n


SEED_TEST = "Welch's t-test over training seeds"


def judge_seeds(claim: str, source: str, better: tuple[str, list[Measure]], worse: tuple[str, list[Measure]]
                ) -> Verdict:
    """The claim "``better`` beats ``worse``" over training seeds: each side's accuracy per seed
    (one training run each, evaluated on the same images), compared by Welch's t-test
    (one-sided, 5 %), so the spread between training runs is in the error: *holds* when the
    claimed direction is significant, *does not hold* when the other one is, else
    *inconclusive*. Needs at least two seeds a side."""
    from scipy.stats import ttest_ind

    (name_a, a), (name_b, b) = better, worse
    if len(a) < 2 or len(b) < 2:
        return Verdict(claim, source, NOT_JUDGED, f"missing: seeds ({name_a}: {len(a)}, {name_b}: {len(b)} "
                                                  f"evaluated; two a side needed)")
    va, vb = np.array([m.mean for m in a]), np.array([m.mean for m in b])
    diff = float(va.mean() - vb.mean())
    se = math.sqrt(va.var(ddof=1) / len(va) + vb.var(ddof=1) / len(vb))
    greater = float(ttest_ind(va, vb, equal_var=False, alternative="greater").pvalue) if se > 0 else math.nan
    less = float(ttest_ind(va, vb, equal_var=False, alternative="less").pvalue) if se > 0 else math.nan
    verdict = (HOLDS if greater < 0.05 else DOES_NOT_HOLD if less < 0.05 else INCONCLUSIVE) if se > 0 else \
        INCONCLUSIVE
    def side(name: str, values: np.ndarray) -> str:
        return f"{name} {values.mean():.2f}±{values.std(ddof=1):.2f} over {len(values)} seeds ({', '.join(f'{v:.2f}' for v in values)})"
    evidence = (f"{side(name_a, va)} vs {side(name_b, vb)}; difference {diff:+.2f}, standard error {se:.2f}; "
                f"{SEED_TEST}, one-sided p {greater:.3g}")
    return Verdict(claim, source, verdict, evidence, difference=diff, two_se=2 * se)
