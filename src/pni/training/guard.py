"""The divergence guard of training, checked after every update: a parameter tensor (alphas
included) whose L2 norm is NaN, inf or above WEIGHT_LIMIT, or a loss above LOSS_LIMIT nats
(a logit margin of 10,000), ends the run; that state is never saved. At the end of an epoch,
before its state is saved, ``probe_loss`` must be <= LOSS_LIMIT too: weights under
WEIGHT_LIMIT can still give a loss of 1e22 (issue 22)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..models import eval_mode
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


def probe_loss(model: nn.Module, images: Tensor, labels: Tensor, device: torch.device, k: int = 256) -> float:
    """The clean cross-entropy of the first ``k`` images (uint8 or in [0, 1]) in eval mode, the
    noise on, the random state left as it was: a fixed probe of an end-of-epoch state."""
    x, y = images[:k].to(device), labels[:k].to(device)
    x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
    devices = [device] if device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices), eval_mode(model):
        return float(torch.nn.functional.cross_entropy(model(x).float(), y))
