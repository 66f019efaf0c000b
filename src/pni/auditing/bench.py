"""The audit's measuring bench: accuracy of one model on fixed images, over trials.

Built on ``pni.evaluation.evaluator.sample_outcomes``, the outcome function of ``pni eval``: trial
``t`` seeds every batch from ``(seed + t, batch start)`` (``pni.evaluation.evaluator.batch_seed``) and
judges every attacked image over ``votes`` noise draws, so ``pni audit`` and ``pni eval``
give the same accuracy, number for number, for the same model, attack, seed, batch size,
draws and images. Also here: the noise tolerance two accuracies must exceed to differ, and
the preparation of the audited images (a class-stratified sample, checked against the model).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..settings import check_int
from ..attacks import AttackError, fgsm, is_randomized, pgd
from ..attacks._common import check_model_inputs
from ..data import Dataset, stratified_indices, subset_tensors, warn_missing_classes
from ..evaluation.evaluator import sample_outcomes
from ..models import model_device
from .settings import AuditError, AuditSettings

Attack = Callable[[nn.Module, Tensor, Tensor], Tensor]


def tolerance(p1: float, p2: float, n: int, z: float = 2.0, floor: float = 0.01) -> float:
    """How far apart two accuracies (fractions over ``n`` images) must be to differ."""
    n = max(int(n), 1)
    se = math.sqrt(max(p1 * (1 - p1), 0.0) / n + max(p2 * (1 - p2), 0.0) / n)
    return max(floor, z * se)


def pct(p: float) -> float:
    """An accuracy fraction as the percent the evidence records (4 decimals)."""
    return round(100 * p, 4)


class Bench:
    """Accuracies of one model on fixed images, over trials, cached by attack key.

    Each attacked image is judged over ``votes`` forward passes (its expected single-pass
    correctness): the same expectation as one pass, with less noise on a randomized model.
    """

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, trials: int = 1, seed: int = 0,
                 batch_size: int = 256, votes: int | None = None, subset: dict[str, Any] | None = None) -> None:
        votes = votes or 1
        self.model, self.x, self.y, self.subset = model, x, y, subset
        self.trials, self.seed, self.batch_size, self.votes = trials, seed, batch_size, votes
        self.cache: dict[tuple, list[float]] = {}

    @property
    def n_eff(self) -> int:
        return len(self.y) * self.trials

    def trial_accuracies(self, key: tuple, attack: Attack | None) -> list[float]:
        """Accuracy per trial, as ``pni.evaluation.evaluator.evaluate`` computes it: trial ``t`` is
        ``sample_outcomes(..., seed=seed + t, votes=votes)``, its accuracy the mean share of
        correct draws."""
        if key not in self.cache:
            outcomes = [sample_outcomes(self.model, self.x, self.y, attack, self.batch_size,
                                        seed=self.seed + t, votes=self.votes)["fraction"]
                        for t in range(self.trials)]
            self.cache[key] = torch.stack(outcomes).cpu().mean(1).tolist()
        return self.cache[key]

    def accuracy(self, key: tuple, attack: Attack | None) -> tuple[float, float]:
        """Mean and (population) std over trials of ``trial_accuracies``."""
        values = torch.tensor(self.trial_accuracies(key, attack), dtype=torch.float64)
        std = float(values.std(correction=0)) if len(values) > 1 else 0.0
        return float(values.mean()), std

    def clean(self) -> tuple[float, float]:
        return self.accuracy(("clean",), None)

    def fgsm(self, eps: float) -> tuple[float, float]:
        return self.accuracy(("fgsm", eps), lambda m, x, y: fgsm(m, x, y, eps))

    def pgd(self, eps: float, step_size: float, steps: int, eot: int = 1) -> tuple[float, float]:
        if eps == 0:
            return self.clean()
        step_size = min(step_size, 1.0)
        return self.accuracy(("pgd", eps, step_size, steps, eot),
                             lambda m, x, y: pgd(m, x, y, eps, step_size, steps, True, eot))



def prepare(model: nn.Module, data: Dataset | tuple[Tensor, Tensor], n: int | None,
            device: str | torch.device | None) -> tuple[Tensor, Tensor, dict[str, Any] | None]:
    """Images and labels of a class-stratified sample of ``n`` (all: None), on ``device``,
    and the subset record; warns (one line) when the sample lacks one of the classes."""
    classes = _known_classes(model, data)
    x, y, subset = subset_tensors(data, n, num_classes=classes)
    if len(y) == 0:
        raise AuditError("the audit needs at least one image; the data is empty")
    if classes is not None:
        what = f"the audited subset ({len(y)} images)" if subset else f"the audited data ({len(y)} images)"
        warn_missing_classes(y, classes, what, data.classes if isinstance(data, Dataset) else None)
    if device is None:
        device = model_device(model)
    x, y = x.to(device), y.to(device)
    try:  # finite weights; pixels, labels and image shape that fit the model
        check_model_inputs(model, x, y)
    except AttackError as error:
        raise AuditError(str(error)) from None
    return x, y, subset


def _known_classes(model: nn.Module, data: Dataset | tuple[Tensor, Tensor]) -> int | None:
    if isinstance(data, Dataset):
        return len(data.classes)
    classes = getattr(model, "num_classes", None)
    return classes if isinstance(classes, int) else None


def new_bench(model: nn.Module, data: Dataset | tuple[Tensor, Tensor], n: int | None,
              device: str | torch.device | None, trials: int, seed: int, batch_size: int,
              votes: int | None) -> Bench:
    """A bench on ``prepare``'s images; ``votes`` None: 10 on a randomized model, else 1."""
    x, y, subset = prepare(model, data, n, device)
    if votes is None:
        votes = AuditSettings.votes if is_randomized(model, x[:16]) else 1
    else:
        check_int(votes, "votes", 1, AuditError)
    return Bench(model, x, y, trials, seed, batch_size, votes, subset)


def stratified_head(x: Tensor, y: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """``m`` of the images, class-stratified (all of them, in order, when ``m`` covers them)."""
    if m >= len(y):
        return x, y
    index = stratified_indices(y.cpu(), m).to(y.device)
    return x[index], y[index]
