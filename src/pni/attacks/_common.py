"""Shared pieces of the gradient attacks: argument checks, losses, the EOT input gradient.

Every attack works in [0, 1] pixel space and differentiates with respect to the input
only (``torch.autograd.grad``); parameter gradients are never computed.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LossFn = Callable[[Tensor, Tensor], Tensor]


class AttackError(ValueError):
    """A bad attack argument (eps, steps, eot, ...); the message names it."""


def check_eps(eps: float, name: str = "eps") -> float:
    if not isinstance(eps, (int, float)) or not 0.0 < float(eps) <= 1.0:
        raise AttackError(f"{name} must be in (0, 1] (images are in [0, 1]), got {eps!r}")
    return float(eps)


def check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise AttackError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_images(x: Tensor, y: Tensor) -> None:
    if x.dim() != 4:
        raise AttackError(f"images must have shape (N, C, H, W), got {tuple(x.shape)}")
    if y.shape != (x.shape[0],):
        raise AttackError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise AttackError("images must lie in [0, 1] (the model normalizes internally)")


def cross_entropy_sum(logits: Tensor, y: Tensor) -> Tensor:
    """Summed cross-entropy: per-sample input gradients do not depend on the batch size."""
    return F.cross_entropy(logits, y, reduction="sum")


@contextlib.contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[None]:
    """Parameters stop requiring grad inside, so forward passes record no weight graph."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def input_gradient(model: nn.Module, x: Tensor, y: Tensor, eot: int = 1,
                   loss_fn: LossFn = cross_entropy_sum) -> tuple[Tensor, Tensor]:
    """The gradient of ``loss_fn(model(x), y)`` w.r.t. ``x``, averaged over ``eot`` forward
    passes (independent noise draws: Expectation over Transformation), and the last logits.
    """
    grad = torch.zeros_like(x)
    logits = None
    for _ in range(eot):
        x_in = x.detach().requires_grad_(True)
        logits = model(x_in)
        (g,) = torch.autograd.grad(loss_fn(logits, y), x_in)
        grad += g
    return grad / eot, logits.detach()


def project_linf(x_adv: Tensor, x: Tensor, eps: float) -> Tensor:
    """Projection onto the L-inf ball of radius eps around x, intersected with [0, 1]."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)
