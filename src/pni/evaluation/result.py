"""What an evaluation returns (``Evaluation``): per noise setting and attack, the accuracy of
every trial, the per-sample outcomes and an attack's own per-sample figures, with its
``summary()`` (the paper's mean ± std), ``to_json()`` / ``from_json()`` (``results.json``) and
the attack metrics (success rate, mean L2); the names of the noise settings and of the
per-image worst case."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import PNIError
from . import per_image

WORST_CASE = "worst-case"

NOISE_SETTINGS = {"with_noise": True, "without_noise": False}
NOISE_TITLES = {"with_noise": "Test with PNI", "without_noise": "Test without PNI"}


class EvaluationError(PNIError):
    """A bad evaluation argument (trials, attack name, data); the message names it."""


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation, as the paper's mean±std."""
    t = torch.tensor(list(values), dtype=torch.float64)
    return float(t.mean()), float(t.std(correction=0)) if len(t) > 1 else 0.0


@dataclass
class Evaluation:
    """Per-attack accuracies over trials for each noise setting, and per-sample results."""

    attacks: dict[str, dict[str, Any]]                 # attack name -> its parameters
    trials: int
    seeds: list[int]
    n: int
    accuracies: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # setting -> attack -> per trial
    correct: dict[str, dict[str, Tensor]] = field(default_factory=dict)          # setting -> attack -> (trials, n)
    # judged over `votes` noise draws: accuracies are expected accuracies (mean over draws),
    # correct is the majority vote, fractions the per-sample share of correct draws
    votes: int = 1
    fractions: dict[str, dict[str, Tensor]] = field(default_factory=dict)        # setting -> attack -> (trials, n)
    vote_accuracies: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # majority vote, per trial
    extras: dict[str, dict[str, dict[str, Tensor]]] = field(default_factory=dict)  # attack's per-sample figures
    subset: dict[str, Any] | None = None  # which subset of the data (pni.data.subset_record); None: all
    labels_sha256: str | None = None      # the evaluated labels' digest (pni.evaluation.per_image.labels_digest)
    cascade: list[str] = field(default_factory=list)  # chained attacks (cumulative accuracies), in order
    randomized: bool | None = None        # two passes of the model differ (user_model.detect_randomness)

    def record(self, setting: str, name: str, outcomes: dict[str, Tensor]) -> None:
        """Files one finished attack's per-sample ``outcomes`` (``(trials, n)`` tensors:
        ``fraction`` of correct draws, majority ``correct``, and the attack's own figures)."""
        figures = dict(outcomes)
        fractions, correct = figures.pop("fraction"), figures.pop("correct")
        for table in (self.accuracies, self.correct, self.fractions, self.vote_accuracies):
            table.setdefault(setting, {})
        self.correct[setting][name] = correct
        self.fractions[setting][name] = fractions
        self.accuracies[setting][name] = fractions.mean(1).tolist()
        self.vote_accuracies[setting][name] = correct.float().mean(1).tolist()
        if figures:
            self.extras.setdefault(setting, {})[name] = figures

    def add_worst_case(self, setting: str, names: Sequence[str]) -> None:
        """Per trial, a sample counts as robust only if correct under every attack in ``names``
        (with votes: its smallest share of correct draws over them, and the majority vote)."""
        fractions = torch.stack([self.fractions[setting][n] for n in names]).amin(0)
        correct = torch.stack([self.correct[setting][n] for n in names]).all(0)
        self.record(setting, WORST_CASE, {"fraction": fractions, "correct": correct})

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{setting: {attack: {"mean", "std"}}}`` in percent."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for setting, per_attack in self.accuracies.items():
            out[setting] = {}
            for name, values in per_attack.items():
                mean, std = mean_std([100 * v for v in values])
                out[setting][name] = {"mean": mean, "std": std}
        return out

    def vote_summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """Majority-vote accuracies, ``{setting: {attack: {"mean", "std"}}}`` in percent."""
        return {setting: {name: dict(zip(("mean", "std"), mean_std([100 * v for v in values])))
                          for name, values in per_attack.items()}
                for setting, per_attack in self.vote_accuracies.items()}

    def attack_metrics(self) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
        """The attacks' own figures, mean ± std over trials: ``success_rate`` (% of the
        initially correct samples the attack fooled, by its own check), ``mean_l2`` (mean L2
        of those successful perturbations: Table 4; ``mean_l2_stderr`` its standard error over
        the images) and ``reported_accuracy`` (%, one
        stochastic pass: what AutoAttack alone would report)."""
        out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
        for setting, per_attack in self.extras.items():
            for name, values in per_attack.items():
                per_trial = _trial_metrics(values)
                if per_trial:
                    out.setdefault(setting, {})[name] = {
                        metric: dict(zip(("mean", "std"), mean_std(v))) for metric, v in per_trial.items()}
        return out

    def to_json(self) -> dict[str, Any]:
        out = {"n": self.n, "trials": self.trials, "seeds": self.seeds, "attacks": self.attacks,
               "votes": self.votes,
               "accuracy_percent": self.summary(),
               "accuracy_per_trial": self.accuracies}
        if self.subset is not None:
            out["subset"] = self.subset
        if self.cascade:
            out["cascade"] = self.cascade
        if self.randomized is not None:
            out["randomized"] = self.randomized
        if self.votes > 1:
            out["majority_vote_accuracy_percent"] = self.vote_summary()
            out["majority_vote_accuracy_per_trial"] = self.vote_accuracies
        metrics = self.attack_metrics()
        if metrics:
            out["attack_metrics"] = metrics
        if self.fractions:   # each image's share of correct draws per trial (pni.evaluation.per_image)
            out["per_image"] = per_image.block(self.fractions, self.n, self.votes, self.labels_sha256,
                                               self.subset is not None)
        return out

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> Evaluation:
        """The evaluation ``to_json`` wrote (``results.json``): with its per-image shares
        (``fractions``; with one vote ``correct`` too) where recorded (``per_image``), without
        the attacks' own per-sample figures."""
        try:
            shares = per_image.read_block(values["per_image"]) if values.get("per_image") else {}
            accuracies = {setting: {name: [float(v) for v in per_trial]
                                    for name, per_trial in per_attack.items()}
                          for setting, per_attack in values["accuracy_per_trial"].items()}
            votes = {setting: {name: [float(v) for v in per_trial]
                               for name, per_trial in per_attack.items()}
                     for setting, per_attack in values.get("majority_vote_accuracy_per_trial", {}).items()}
            fractions = {setting: {name: torch.from_numpy(v).float() for name, v in per_attack.items()}
                         for setting, per_attack in shares.items()}
            one_vote = int(values.get("votes", 1)) == 1
            return cls(attacks=dict(values.get("attacks", {})), trials=int(values["trials"]),
                       seeds=[int(s) for s in values.get("seeds", [])], n=int(values["n"]),
                       accuracies=accuracies, votes=int(values.get("votes", 1)), vote_accuracies=votes,
                       subset=dict(values["subset"]) if values.get("subset") else None, fractions=fractions,
                       correct={setting: {name: v > 0.5 for name, v in per_attack.items()}
                                for setting, per_attack in fractions.items()} if one_vote else {},
                       labels_sha256=(values.get("per_image") or {}).get("labels_sha256"),
                       cascade=[str(n) for n in values.get("cascade", [])],
                       randomized=values.get("randomized"))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise EvaluationError(f"not an evaluation written by pni eval (results.json): "
                                  f"{type(error).__name__}: {error}") from error


def _trial_metrics(values: dict[str, Tensor]) -> dict[str, list[float]]:
    """Per-trial attack figures from per-sample ones (``(trials, n)`` tensors)."""
    out: dict[str, list[float]] = {}
    success, attacked = values.get("success"), values.get("initially_correct")
    if success is not None:
        attacked = torch.ones_like(success) if attacked is None else attacked
        out["success_rate"] = [100 * float(s[a].float().mean()) if a.any() else math.nan
                               for s, a in zip(success, attacked)]
        if "l2" in values:
            out["mean_l2"] = [float(l2[s & a].mean()) if (s & a).any() else math.nan
                              for l2, s, a in zip(values["l2"], success, attacked)]
            # the standard error of that mean over the images (NaN under two successes):
            # Table 4's comparisons are judged with it
            out["mean_l2_stderr"] = [float(l2[s & a].std() / math.sqrt(int((s & a).sum())))
                                     if int((s & a).sum()) > 1 else math.nan
                                     for l2, s, a in zip(values["l2"], success, attacked)]
    if "reported_correct" in values:
        out["reported_accuracy"] = [100 * float(r.float().mean()) for r in values["reported_correct"]]
    return out
