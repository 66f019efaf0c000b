"""The divergence guard of training, checked after every update: a parameter tensor (alphas
included) whose L2 norm is NaN, inf or above WEIGHT_LIMIT, or a loss above LOSS_LIMIT nats
(a logit margin of 10,000), ends the run; that state is never saved."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..noise import noise_modules

WEIGHT_LIMIT = 1e10
LOSS_LIMIT = 1e4


def problem(tensor: Tensor) -> str | None:
    """Why a parameter fails the divergence guard (NaN, inf, too large), or None."""
    values = tensor.detach()
    if not torch.isfinite(values).all():
        return "NaN" if torch.isnan(values).any() else "inf"
    norm = float(torch.linalg.vector_norm(values.double()))
    return None if norm <= WEIGHT_LIMIT else f"L2 norm {norm:.3g} > {WEIGHT_LIMIT:g}, diverged"


def first_diverged(model: nn.Module) -> str | None:
    """The first noise alpha, then parameter, that is NaN, inf or diverged, and why."""
    for key, noise in noise_modules(model).items():
        if (why := problem(noise.alpha)) is not None:
            return f"alpha of layer {key} ({why})"
    for name, param in model.named_parameters():
        if (why := problem(param)) is not None:
            return f"parameter {name} ({why})"
    return None


def norms(tensors: list[Tensor]) -> list[Tensor]:
    """Per-tensor L2 norms in as few kernels as the device allows (no host synchronization)."""
    if hasattr(torch, "_foreach_norm"):
        return list(torch._foreach_norm(tensors))
    return [torch.linalg.vector_norm(t) for t in tensors]
