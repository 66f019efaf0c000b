"""Judging a randomized model's prediction over several noise draws.

A PNI model answers differently at every forward pass. One pass (the paper's protocol)
is one sample of a random classifier; ``predict_votes`` draws ``votes`` of them. Two
figures follow: the expected accuracy (mean over draws of per-draw correctness: what one
pass measures on average) and the majority-vote accuracy (the derandomized classifier a
deployer could run by voting).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._common import check_positive_int

# An example closer than this to its image in every pixel is stored as that same 8-bit image.
HALF_GRAY_LEVEL = 0.5 / 255


def unmoved(x: Tensor, x_adv: Tensor) -> Tensor:
    """Per sample: ``x_adv`` lies within half a gray level of ``x`` in every pixel (it rounds
    back to the same 8-bit image). On a randomized model such an example is judged by its
    image's own vote: a second vote on one image is no attack, and a borderline image whose
    votes split would otherwise be "fooled" at distance zero."""
    if len(x) == 0:
        return torch.zeros(0, dtype=torch.bool, device=x.device)
    return (x_adv - x).abs().flatten(1).amax(1) < HALF_GRAY_LEVEL


@torch.no_grad()
def predict_votes(model: nn.Module, x: Tensor, votes: int = 1, batch_size: int = 256) -> Tensor:
    """Per-draw predictions, shape ``(votes, N)``: ``votes`` forward passes of ``x`` with the
    model's noise as it is (mode and switch untouched). A deterministic model is run twice
    per batch and its predictions repeated."""
    check_positive_int(votes, "votes")
    check_positive_int(batch_size, "batch_size")
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        first = model(xb)
        draws = [first.argmax(1)]
        if votes > 1:
            second = model(xb)
            if torch.equal(first, second):
                draws *= votes
            else:
                draws.append(second.argmax(1))
                draws += [model(xb).argmax(1) for _ in range(votes - 2)]
        out.append(torch.stack(draws))
    if not out:
        return torch.zeros(votes, 0, dtype=torch.long, device=x.device)
    return torch.cat(out, dim=1)


@torch.no_grad()
def judge_examples(model: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor, votes: int,
                   batch_size: int = 256, randomized: bool = True) -> tuple[Tensor, Tensor]:
    """How a success-rate attack's outcome is judged on a randomized model: per sample, whether
    the majority vote over ``votes`` fresh draws classifies the clean image correctly
    (``initially_correct``) and misclassifies the returned example (``fooled``). A single draw
    that happened to misclassify an iterate during the attack is not a success. On a
    ``randomized`` model an example within half a gray level of its image (``unmoved``) is
    that image: it is fooled exactly when the image's own vote is wrong."""
    initially_correct = vote_correctness(predict_votes(model, x, votes, batch_size), y)[1]
    fooled = ~vote_correctness(predict_votes(model, x_adv, votes, batch_size), y)[1]
    if randomized:
        fooled = torch.where(unmoved(x, x_adv), ~initially_correct, fooled)
    return initially_correct, fooled


def majority_vote(preds: Tensor, num_classes: int | None = None) -> Tensor:
    """The most frequent class of each column of ``preds`` (``(votes, N)``); ties go to the
    lowest class index."""
    if preds.numel() == 0:
        return torch.zeros(preds.shape[1], dtype=torch.long, device=preds.device)
    k = int(preds.max()) + 1 if num_classes is None else num_classes
    counts = torch.zeros(preds.shape[1], k, dtype=torch.long, device=preds.device)
    counts.scatter_add_(1, preds.t(), torch.ones_like(preds.t()))
    return counts.argmax(1)


def vote_correctness(preds: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Per sample: the fraction of draws that are correct (float) and whether the majority
    vote is correct (bool)."""
    fraction = (preds == y.unsqueeze(0)).float().mean(0)
    majority = majority_vote(preds, max(int(preds.max()) if preds.numel() else 0,
                                        int(y.max()) if y.numel() else 0) + 1) == y
    return fraction, majority


def expected_accuracy(preds: Tensor, y: Tensor) -> float:
    """Mean over draws and samples of correctness: the accuracy one pass gives on average."""
    return float((preds == y.unsqueeze(0)).float().mean())


def majority_vote_accuracy(preds: Tensor, y: Tensor) -> float:
    """Accuracy of the majority vote over the draws."""
    return float(vote_correctness(preds, y)[1].float().mean())


@dataclass
class VotedResult:
    """Adversarial examples and a model's per-sample correctness on them, judged over
    noise draws: ``fraction`` of the draws correct (float) and the majority vote (bool)."""

    x_adv: Tensor
    fraction: Tensor
    correct: Tensor

    @property
    def accuracy(self) -> float:
        """Expected accuracy over the draws (mean of ``fraction``)."""
        return float(self.fraction.mean()) if len(self.fraction) else math.nan

    @property
    def vote_accuracy(self) -> float:
        """Majority-vote accuracy over the draws."""
        return float(self.correct.float().mean()) if len(self.correct) else math.nan
