"""The substitute-model black-box attack of Papernot et al. (2017, "Practical Black-Box
Attacks against Machine Learning"), named in the PNI paper's setup (Table 5).

The attacker sees only the target's predicted class. It starts from a small seed set of
unlabelled images, labels them by querying the target (one query per image), trains a
substitute on them, then grows the set by Jacobian-based dataset augmentation: every
point ``x`` adds ``clip(x + lambda * sign(dF_label(x) / dx), 0, 1)``, the gradient taken
on the *substitute* at the target's label, and the new points are labelled by the target.
After ``rounds`` rounds, FGSM / PGD examples made on the substitute are transferred to
the target (``substitute_attack``).

The target is queried with its noise on (a PNI model answers as it is deployed) and in
eval mode; every query is counted.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models import create_model
from ..models.modes import eval_mode, model_device
from ..noise import noise_enabled
from ._common import AttackError, check_eps, check_images, check_positive_int, frozen_parameters
from .transfer import transfer
from .votes import VotedResult, predict_votes

ArchLike = str | Callable[[], nn.Module] | None


@dataclass
class SubstituteRecord:
    """How a substitute was trained: target queries spent, the training-set size of every
    round, and its agreement with the target's labels on held-out images."""

    arch: str
    rounds: int
    epochs_per_round: int
    lambda_: float
    seed_size: int
    sizes: list[int] = field(default_factory=list)        # training-set size per round
    queries: int = 0                                       # target queries to label the training set
    agreement: float | None = None                         # on the held-out images (None: none given)
    agreement_per_round: list[float] = field(default_factory=list)
    holdout_size: int = 0
    holdout_queries: int = 0                               # queries spent measuring agreement

    def to_json(self) -> dict[str, Any]:
        return {"arch": self.arch, "rounds": self.rounds, "epochs_per_round": self.epochs_per_round,
                "lambda": self.lambda_, "seed_size": self.seed_size, "sizes": self.sizes,
                "queries": self.queries, "agreement": self.agreement,
                "agreement_per_round": self.agreement_per_round, "holdout_size": self.holdout_size,
                "holdout_queries": self.holdout_queries}


@dataclass
class SubstituteResult(VotedResult):
    """What ``substitute_attack`` returns: the examples made on the substitute and the
    target's per-sample correctness on them (``accuracy``, ``vote_accuracy``), with the
    target's clean accuracy on the same images for comparison."""

    clean_fraction: Tensor = field(default_factory=lambda: torch.zeros(0))
    params: dict[str, Any] = field(default_factory=dict)
    record: SubstituteRecord | None = None

    @property
    def clean_accuracy(self) -> float:
        return float(self.clean_fraction.mean()) if len(self.clean_fraction) else math.nan

    def to_json(self) -> dict[str, Any]:
        return {"attack": self.params, "n": len(self.fraction),
                "clean_accuracy": self.clean_accuracy, "accuracy": self.accuracy,
                "majority_vote_accuracy": self.vote_accuracy,
                "substitute": self.record.to_json() if self.record is not None else None}


def default_arch(x: Tensor) -> str:
    """LeNet-5 for 1x28x28 images, ResNet-20 for 3x32x32 (and anything else)."""
    return "lenet5" if tuple(x.shape[1:]) == (1, 28, 28) else "resnet20"


def _build(arch: ArchLike, x: Tensor, num_classes: int) -> tuple[nn.Module, str]:
    if arch is None:
        arch = default_arch(x)
    if isinstance(arch, str):
        return create_model(arch, num_classes=num_classes, in_channels=x.shape[1]), arch
    if not callable(arch):
        raise AttackError(f"arch must be a model name or a callable () -> nn.Module, got {type(arch).__name__}")
    return arch(), getattr(arch, "__name__", type(arch).__name__)


@torch.no_grad()
def query_labels(target: nn.Module, x: Tensor, batch_size: int = 256) -> Tensor:
    """The target's predicted class for each image: one query each, noise on, eval mode."""
    with eval_mode(target), noise_enabled(target, True):
        return predict_votes(target, x, 1, batch_size)[0]


def jacobian_augment(substitute: nn.Module, x: Tensor, labels: Tensor, lambda_: float,
                     batch_size: int = 256) -> Tensor:
    """Papernot et al.'s new points ``clip(x + lambda * sign(dF_label(x)/dx), 0, 1)``: the
    gradient of the substitute's output for the target's label (its softmax probability,
    as in the paper's F), one new point per old one."""
    out = []
    with eval_mode(substitute), frozen_parameters(substitute):
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size].detach().clone().requires_grad_(True)
            probs = F.softmax(substitute(xb), dim=1)
            picked = probs.gather(1, labels[start:start + batch_size].unsqueeze(1)).sum()
            grad, = torch.autograd.grad(picked, xb)
            out.append((xb.detach() + lambda_ * grad.sign()).clamp_(0.0, 1.0))
    return torch.cat(out) if out else x.detach().clone()


def _fit(model: nn.Module, x: Tensor, y: Tensor, epochs: int, batch_size: int, lr: float,
         generator: torch.Generator | None) -> None:
    """A plain training loop (Adam, cross-entropy) over ``(x, y)``."""
    optimizer = torch.optim.Adam(model.parameters(), lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator).to(x.device)
        for start in range(0, len(y), batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.eval()


@torch.no_grad()
def agreement(substitute: nn.Module, x: Tensor, target_labels: Tensor, batch_size: int = 256) -> float:
    """The fraction of ``x`` where the substitute predicts the target's label."""
    with eval_mode(substitute):
        preds = predict_votes(substitute, x, 1, batch_size)[0]
    return float((preds == target_labels).float().mean()) if len(x) else math.nan


def train_substitute(target: nn.Module, seed_images: Tensor, arch: ArchLike = None, *, rounds: int = 6,
                     epochs_per_round: int = 10, lambda_: float = 0.1, holdout: Tensor | None = None,
                     num_classes: int | None = None, lr: float = 1e-3, batch_size: int = 64,
                     seed: int | None = 0) -> tuple[nn.Module, SubstituteRecord]:
    """Trains a substitute of ``target`` from ``seed_images`` (labels unknown: the target's
    predictions label them) with Jacobian-based dataset augmentation (Papernot et al. 2017).

    Every round trains the substitute on the current set for ``epochs_per_round`` epochs;
    between rounds the set doubles by ``jacobian_augment`` at step ``lambda_``, the new points
    labelled by the target (one query each). ``rounds`` training rounds make
    ``len(seed_images) * 2 ** (rounds - 1)`` training points and as many queries.

    Args:
        target: the black-box model (only its predicted class is used; queried with its
            noise on, in eval mode; left as it was).
        seed_images: the attacker's initial images, (N, C, H, W) in [0, 1] (Papernot: 150).
        arch: a ``pni.models`` name or a callable building the substitute (default: lenet5
            for 1x28x28 images, resnet20 otherwise).
        holdout: images to measure agreement with the target on (queried, counted apart).
        num_classes: the target's classes (default: ``target.num_classes`` or 10).
        seed: seeds the substitute's initialization and shuffling (None: the global RNG).

    Returns:
        (the substitute in eval mode, a ``SubstituteRecord``).
    """
    check_positive_int(rounds, "rounds")
    check_positive_int(epochs_per_round, "epochs_per_round", minimum=0)
    check_positive_int(batch_size, "batch_size")
    check_eps(lambda_, "lambda_")
    if seed_images.dim() != 4 or len(seed_images) == 0:
        raise AttackError(f"seed_images must be a non-empty (N, C, H, W) batch, got shape {tuple(seed_images.shape)}")
    device = model_device(target)
    x = seed_images.detach().to(device)
    check_images(x, torch.zeros(len(x), dtype=torch.long, device=device))
    classes = num_classes or int(getattr(target, "num_classes", 10))
    generator = None
    if seed is not None:
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
    substitute, name = _build(arch, x, classes)
    substitute = substitute.to(device)
    record = SubstituteRecord(name, rounds, epochs_per_round, float(lambda_), len(x))
    held_labels = None
    if holdout is not None:
        holdout = holdout.detach().to(device)
        held_labels = query_labels(target, holdout)
        record.holdout_size = record.holdout_queries = len(holdout)
    y = query_labels(target, x)
    record.queries += len(x)
    for r in range(rounds):
        record.sizes.append(len(x))
        _fit(substitute, x, y, epochs_per_round, batch_size, lr, generator)
        if held_labels is not None:
            record.agreement_per_round.append(agreement(substitute, holdout, held_labels))
        if r < rounds - 1:
            new = jacobian_augment(substitute, x, y, lambda_)
            new_labels = query_labels(target, new)
            record.queries += len(new)
            x, y = torch.cat([x, new]), torch.cat([y, new_labels])
    if record.agreement_per_round:
        record.agreement = record.agreement_per_round[-1]
    return substitute.eval(), record


def substitute_attack(target: nn.Module, substitute: nn.Module, x: Tensor, y: Tensor, eps: float,
                      attack: str = "fgsm", *, steps: int | None = None, step_size: float | None = None,
                      votes: int = 1, batch_size: int = 256, seed: int | None = None,
                      record: SubstituteRecord | None = None) -> SubstituteResult:
    """FGSM or PGD (``pni.attacks.gradient``, by registry name) made on ``substitute`` at
    ``eps`` and judged on ``target`` with its noise on over ``votes`` draws, next to the
    target's clean accuracy on ``x`` (same draws protocol). ``record``: the substitute's
    ``SubstituteRecord``, kept in the result."""
    if attack not in ("fgsm", "pgd"):
        raise AttackError(f"the substitute attack transfers 'fgsm' or 'pgd', got {attack!r}")
    check_positive_int(votes, "votes")
    with noise_enabled(target, True):
        result = transfer(substitute, target, x, y, attack, eps=eps, steps=steps, step_size=step_size,
                          votes=votes, batch_size=batch_size, seed=seed)
        with eval_mode(target):
            clean = (predict_votes(target, x, votes, batch_size) == y.unsqueeze(0)).float().mean(0)
    params = {**result.params, "eps": float(eps), "source": "substitute (Papernot et al. 2017)"}
    return SubstituteResult(result.x_adv, result.fraction, result.correct, clean_fraction=clean,
                            params=params, record=record)
